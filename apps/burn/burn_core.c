/* burn_core.c - options, phase plan, per-sample work and checkpoint format
 * of paramount-burn (see burn_core.h).
 *
 * The rule everything here serves: the job's result is a function of the
 * global configuration only, never of the rank count or of where it was
 * stopped and resumed, so tests can prove no iteration is lost or repeated.
 */
#include "burn_core.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "paramount.h"

/* Caps that keep every product below 2^64 and every run finite. */
#define BURN_SAMPLES_MAX (UINT64_C(1) << 40)
#define BURN_BATCH_MAX (UINT64_C(1) << 30)
#define BURN_EPOCHS_MAX UINT64_C(1000000)
#define BURN_ITERS_MAX (UINT64_C(1) << 40)
#define BURN_WORK_MAX UINT64_C(1000000000)
#define BURN_ALLREDUCE_MAX (UINT64_C(1) << 30)
#define BURN_SLEEP_MS_MAX UINT64_C(10000)
#define BURN_CKPT_SECONDS_MAX UINT64_C(31536000)
#define BURN_PERCENT_MAX 1000u
#define BURN_WARMUP_PERCENT 25u

#define BURN_DEFAULT_SAMPLES 2048
#define BURN_DEFAULT_BATCH 64
#define BURN_DEFAULT_EPOCHS 3
#define BURN_DEFAULT_WORK 500000
#define BURN_DEFAULT_ALLREDUCE 262144

static const char burn_usage_text[] =
    "usage: paramount-burn [options]\n"
    "A small MPI workload with real floating-point work and an allreduce per\n"
    "iteration, reported through libparamount.  Run it under mpirun with any\n"
    "number of ranks; the result depends only on the global options below.\n"
    "Without options it runs a job of a few seconds.\n"
    "\n"
    "global work (must match a checkpoint when resuming):\n"
    "  --samples N            samples per epoch (default 2048)\n"
    "  --batch N              global batch: samples per iteration over all\n"
    "                         ranks (default 64); iterations per epoch =\n"
    "                         ceil(samples / batch)\n"
    "  --work N               floating-point multiply-adds per sample\n"
    "                         (default 500000; 0 allowed)\n"
    "  --phases SPEC          name[:ITERS][@PERCENT],... (default \"main\");\n"
    "                         each phase but the last needs :ITERS, the last\n"
    "                         runs to the end; PERCENT scales --work (default\n"
    "                         25 for a phase named warmup, else 100), e.g.\n"
    "                         warmup:20,main\n"
    "  --epochs N             epochs (default 3); may grow on resume\n"
    "\n"
    "per run:\n"
    "  --allreduce-bytes N    size of the per-iteration MPI_Allreduce\n"
    "                         (default 262144; at least 8*(2+ranks))\n"
    "  --iter-sleep-ms N      sleep N ms per iteration, counted as compute\n"
    "                         (default 0, at most 10000)\n"
    "  --stop-at K            stop after iteration K (0-based) and write a\n"
    "                         checkpoint, as a controller stop would\n"
    "  --checkpoint-every K   also write a checkpoint every K iterations\n"
    "  --checkpoint-seconds S also write a checkpoint every S seconds\n"
    "  --checkpoint-dir DIR   where burn.ckpt goes (default $PARAMOUNT_RUN_DIR,\n"
    "                         else the current directory)\n"
    "  --resume FILE          continue from a checkpoint, on any rank count\n"
    "  --quiet                print only the final line\n"
    "  --help                 this text\n"
    "\n"
    "A controller (PARAMOUNT_ENDPOINT) may ask the job to stop: the ranks agree\n"
    "on one iteration, finish it, write a checkpoint and exit 0.\n"
    "The last line on stdout is\n"
    "  paramount-burn: done|stopped iterations=N samples=N checksum=0x... ...\n"
    "Exit status: 0 success (also after a stop), 1 runtime error (e.g. a\n"
    "checkpoint refused or not written), 2 bad option.\n";

const char *burn_usage(void) { return burn_usage_text; }

static void burn_why(char *why, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void burn_why(char *why, size_t cap, const char *fmt, ...) {
  if (!why || cap == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, cap, fmt, ap);
  va_end(ap);
}

/* Strict decimal: digits only, no sign, no blanks, within [min, max]. */
static int burn_parse_u64(const char *s, uint64_t min, uint64_t max,
                          uint64_t *out) {
  if (!s || !*s) return -1;
  uint64_t v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return -1;
    unsigned d = (unsigned)(*p - '0');
    if (v > (UINT64_MAX - d) / 10) return -1;
    v = v * 10 + d;
  }
  if (v < min || v > max) return -1;
  *out = v;
  return 0;
}

static int burn_phase_name_ok(const char *s, size_t n) {
  if (n == 0 || n > BURN_PHASE_NAME_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
      return 0;
  }
  return 1;
}

/* Parses "name[:ITERS][@PERCENT],..." into cfg->phases and writes the
 * normalised spec (every percent explicit) into cfg->phases_spec. */
static int burn_phases_parse(const char *spec, burn_config *cfg, char *why,
                             size_t cap) {
  char buf[1024];
  if (strlen(spec) >= sizeof buf) {
    burn_why(why, cap, "--phases: longer than %zu bytes", sizeof buf - 1);
    return PM_EINVAL;
  }
  snprintf(buf, sizeof buf, "%s", spec);
  cfg->nphases = 0;
  uint64_t first = 0;
  int n = 0;
  /* strtok_r would skip empty items such as "a,,b"; walk by hand. */
  char *item = buf;
  for (;;) {
    char *comma = strchr(item, ',');
    if (comma) *comma = '\0';
    if (n == BURN_MAX_PHASES) {
      burn_why(why, cap, "--phases: more than %d phases", BURN_MAX_PHASES);
      return PM_EINVAL;
    }
    burn_phase *ph = &cfg->phases[n];
    char *at = strchr(item, '@');
    char *colon = strchr(item, ':');
    if (at) *at = '\0';
    if (colon && (!at || colon < at)) *colon = '\0';
    else colon = NULL;
    if (!burn_phase_name_ok(item, strlen(item))) {
      burn_why(why, cap,
               "--phases: phase name '%s' must be 1-%d characters of "
               "[A-Za-z0-9_.-]",
               item, BURN_PHASE_NAME_MAX);
      return PM_EINVAL;
    }
    /* burn_phase_name_ok bounded the length: this copy is whole. */
    snprintf(ph->name, sizeof ph->name, "%.*s", (int)(sizeof ph->name - 1), item);
    ph->work_percent =
        strcmp(item, "warmup") == 0 ? BURN_WARMUP_PERCENT : 100u;
    ph->iters = 0;
    if (colon && burn_parse_u64(colon + 1, 1, BURN_ITERS_MAX, &ph->iters)) {
      burn_why(why, cap,
               "--phases: iterations of phase '%s' must be an integer >= 1, "
               "not '%s'",
               ph->name, colon + 1);
      return PM_EINVAL;
    }
    if (at) {
      uint64_t pct = 0;
      if (burn_parse_u64(at + 1, 1, BURN_PERCENT_MAX, &pct)) {
        burn_why(why, cap,
                 "--phases: work percent of phase '%s' must be an integer in "
                 "[1, %u], not '%s'",
                 ph->name, BURN_PERCENT_MAX, at + 1);
        return PM_EINVAL;
      }
      ph->work_percent = (uint32_t)pct;
    }
    ph->first_iter = first;
    int last = comma == NULL;
    if (!last && !colon) {
      burn_why(why, cap,
               "--phases: phase '%s' is not the last one, so it needs "
               ":ITERS",
               ph->name);
      return PM_EINVAL;
    }
    if (last && colon) {
      burn_why(why, cap,
               "--phases: the last phase '%s' runs to the end of the job; "
               "drop ':%" PRIu64 "'",
               ph->name, ph->iters);
      return PM_EINVAL;
    }
    first += ph->iters;
    if (first > BURN_ITERS_MAX) {
      burn_why(why, cap, "--phases: more than %" PRIu64 " iterations",
               BURN_ITERS_MAX);
      return PM_EINVAL;
    }
    n++;
    if (last) break;
    item = comma + 1;
  }
  cfg->nphases = n;
  /* Normalised: percent always explicit, so "warmup:5" and "warmup:5@25"
   * are the same job to the checkpoint check. */
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    const burn_phase *ph = &cfg->phases[i];
    char one[128];
    if (i + 1 < n)
      snprintf(one, sizeof one, "%s%s:%" PRIu64 "@%u", i ? "," : "", ph->name,
               ph->iters, ph->work_percent);
    else
      snprintf(one, sizeof one, "%s%s@%u", i ? "," : "", ph->name,
               ph->work_percent);
    size_t len = strlen(one);
    if (off + len > BURN_PHASES_SPEC_MAX) {
      burn_why(why, cap, "--phases: longer than %d bytes once normalised",
               BURN_PHASES_SPEC_MAX);
      return PM_EINVAL;
    }
    memcpy(cfg->phases_spec + off, one, len + 1);
    off += len;
  }
  return 0;
}

typedef enum {
  OPT_SAMPLES,
  OPT_BATCH,
  OPT_EPOCHS,
  OPT_WORK,
  OPT_PHASES,
  OPT_ALLREDUCE,
  OPT_SLEEP,
  OPT_STOP_AT,
  OPT_CKPT_EVERY,
  OPT_CKPT_SECONDS,
  OPT_CKPT_DIR,
  OPT_RESUME,
  OPT_QUIET,
  OPT_HELP,
} burn_opt_id;

static const struct {
  const char *name;
  burn_opt_id id;
  int has_arg;
} burn_opts[] = {
    {"samples", OPT_SAMPLES, 1},
    {"batch", OPT_BATCH, 1},
    {"epochs", OPT_EPOCHS, 1},
    {"work", OPT_WORK, 1},
    {"phases", OPT_PHASES, 1},
    {"allreduce-bytes", OPT_ALLREDUCE, 1},
    {"iter-sleep-ms", OPT_SLEEP, 1},
    {"stop-at", OPT_STOP_AT, 1},
    {"checkpoint-every", OPT_CKPT_EVERY, 1},
    {"checkpoint-seconds", OPT_CKPT_SECONDS, 1},
    {"checkpoint-dir", OPT_CKPT_DIR, 1},
    {"resume", OPT_RESUME, 1},
    {"quiet", OPT_QUIET, 0},
    {"help", OPT_HELP, 0},
};

static int burn_set_u64(const char *opt, const char *val, uint64_t min,
                        uint64_t max, uint64_t *out, char *why, size_t cap) {
  if (burn_parse_u64(val, min, max, out) == 0) return 0;
  burn_why(why, cap, "--%s: '%s' is not an integer in [%" PRIu64 ", %" PRIu64
                     "]",
           opt, val, min, max);
  return PM_EINVAL;
}

static int burn_set_path(const char *opt, const char *val, size_t max,
                         char *dst, size_t dst_cap, char *why, size_t cap) {
  size_t n = strlen(val);
  if (n == 0 || n > max) {
    burn_why(why, cap, "--%s: path must be 1-%zu bytes long", opt, max);
    return PM_EINVAL;
  }
  snprintf(dst, dst_cap, "%s", val);
  return 0;
}

static int burn_apply(burn_config *cfg, burn_opt_id id, const char *name,
                      const char *val, char *why, size_t cap) {
  switch (id) {
  case OPT_SAMPLES:
    return burn_set_u64(name, val, 1, BURN_SAMPLES_MAX,
                        &cfg->samples_per_epoch, why, cap);
  case OPT_BATCH:
    return burn_set_u64(name, val, 1, BURN_BATCH_MAX, &cfg->batch, why, cap);
  case OPT_EPOCHS:
    return burn_set_u64(name, val, 1, BURN_EPOCHS_MAX, &cfg->epochs, why,
                        cap);
  case OPT_WORK:
    return burn_set_u64(name, val, 0, BURN_WORK_MAX, &cfg->work_madds, why,
                        cap);
  case OPT_PHASES:
    return burn_phases_parse(val, cfg, why, cap);
  case OPT_ALLREDUCE:
    return burn_set_u64(name, val, 0, BURN_ALLREDUCE_MAX,
                        &cfg->allreduce_bytes, why, cap);
  case OPT_SLEEP:
    return burn_set_u64(name, val, 0, BURN_SLEEP_MS_MAX, &cfg->iter_sleep_ms,
                        why, cap);
  case OPT_STOP_AT:
    return burn_set_u64(name, val, 0, BURN_ITERS_MAX - 1, &cfg->stop_at, why,
                        cap);
  case OPT_CKPT_EVERY:
    return burn_set_u64(name, val, 1, BURN_ITERS_MAX, &cfg->ckpt_every_iters,
                        why, cap);
  case OPT_CKPT_SECONDS:
    return burn_set_u64(name, val, 1, BURN_CKPT_SECONDS_MAX,
                        &cfg->ckpt_every_seconds, why, cap);
  case OPT_CKPT_DIR:
    /* Leaves room for "/burn.ckpt" within the wire protocol's path cap. */
    return burn_set_path(name, val, BURN_PATH_MAX - 16, cfg->ckpt_dir,
                         sizeof cfg->ckpt_dir, why, cap);
  case OPT_RESUME:
    return burn_set_path(name, val, BURN_PATH_MAX, cfg->resume_path,
                         sizeof cfg->resume_path, why, cap);
  case OPT_QUIET:
    cfg->quiet = 1;
    return 0;
  case OPT_HELP:
    cfg->help = 1;
    return 0;
  }
  return PM_EINVAL;
}

int burn_config_parse(int argc, char **argv, burn_config *cfg, char *why,
                      size_t cap) {
  memset(cfg, 0, sizeof *cfg);
  cfg->samples_per_epoch = BURN_DEFAULT_SAMPLES;
  cfg->batch = BURN_DEFAULT_BATCH;
  cfg->epochs = BURN_DEFAULT_EPOCHS;
  cfg->work_madds = BURN_DEFAULT_WORK;
  cfg->allreduce_bytes = BURN_DEFAULT_ALLREDUCE;
  cfg->stop_at = BURN_NO_STOP;
  int rc = burn_phases_parse("main", cfg, why, cap);
  if (rc) return rc;
  const char *run_dir = getenv("PARAMOUNT_RUN_DIR");
  if (run_dir && *run_dir) {
    if (strlen(run_dir) > BURN_PATH_MAX - 16) {
      burn_why(why, cap, "PARAMOUNT_RUN_DIR: longer than %d bytes",
               BURN_PATH_MAX - 16);
      return PM_EINVAL;
    }
    snprintf(cfg->ckpt_dir, sizeof cfg->ckpt_dir, "%s", run_dir);
  } else {
    snprintf(cfg->ckpt_dir, sizeof cfg->ckpt_dir, ".");
  }

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
      burn_why(why, cap, "unexpected argument '%s' (see --help)", a);
      return PM_EINVAL;
    }
    const char *body = a + 2;
    const char *eq = strchr(body, '=');
    size_t nlen = eq ? (size_t)(eq - body) : strlen(body);
    int found = -1;
    for (size_t k = 0; k < sizeof burn_opts / sizeof burn_opts[0]; k++)
      if (strlen(burn_opts[k].name) == nlen &&
          strncmp(burn_opts[k].name, body, nlen) == 0)
        found = (int)k;
    if (found < 0) {
      burn_why(why, cap, "unknown option '--%.*s' (see --help)", (int)nlen,
               body);
      return PM_EINVAL;
    }
    const char *name = burn_opts[found].name;
    const char *val = NULL;
    if (burn_opts[found].has_arg) {
      if (eq) val = eq + 1;
      else if (i + 1 < argc) val = argv[++i];
      else {
        burn_why(why, cap, "--%s needs a value (see --help)", name);
        return PM_EINVAL;
      }
    } else if (eq) {
      burn_why(why, cap, "--%s takes no value", name);
      return PM_EINVAL;
    }
    rc = burn_apply(cfg, burn_opts[found].id, name, val, why, cap);
    if (rc) return rc;
  }

  if (cfg->batch > cfg->samples_per_epoch) {
    burn_why(why, cap,
             "--batch %" PRIu64 " is larger than --samples %" PRIu64,
             cfg->batch, cfg->samples_per_epoch);
    return PM_EINVAL;
  }
  uint64_t ipe = burn_iters_per_epoch(cfg);
  if (ipe > BURN_ITERS_MAX / cfg->epochs) {
    burn_why(why, cap, "more than %" PRIu64 " iterations in all",
             BURN_ITERS_MAX);
    return PM_EINVAL;
  }
  uint64_t total = ipe * cfg->epochs;
  const burn_phase *lastph = &cfg->phases[cfg->nphases - 1];
  if (lastph->first_iter >= total) {
    burn_why(why, cap,
             "--phases: the phases before '%s' take %" PRIu64
             " iterations, but the job has only %" PRIu64,
             lastph->name, lastph->first_iter, total);
    return PM_EINVAL;
  }
  return 0;
}

uint64_t burn_iters_per_epoch(const burn_config *cfg) {
  return (cfg->samples_per_epoch + cfg->batch - 1) / cfg->batch;
}

uint64_t burn_total_iters(const burn_config *cfg) {
  return burn_iters_per_epoch(cfg) * cfg->epochs;
}

const burn_phase *burn_phase_of(const burn_config *cfg, uint64_t iter) {
  for (int i = 0; i + 1 < cfg->nphases; i++)
    if (iter < cfg->phases[i].first_iter + cfg->phases[i].iters)
      return &cfg->phases[i];
  return &cfg->phases[cfg->nphases - 1];
}

/* Samples in [0, iters) for a job of S samples per epoch and batch G: full
 * epochs hold S each, and the partial epoch holds min(k * G, S). */
static uint64_t burn_samples_before_sg(uint64_t s, uint64_t g, uint64_t iters) {
  uint64_t ipe = (s + g - 1) / g;
  uint64_t full = iters / ipe, k = iters % ipe;
  uint64_t part = k * g < s ? k * g : s;
  return full * s + part;
}

uint64_t burn_samples_before(const burn_config *cfg, uint64_t iters) {
  return burn_samples_before_sg(cfg->samples_per_epoch, cfg->batch, iters);
}

void burn_iter_slice(const burn_config *cfg, uint64_t iter, int rank,
                     int nranks, uint64_t *epoch, uint64_t *lo, uint64_t *hi) {
  uint64_t ipe = burn_iters_per_epoch(cfg);
  uint64_t k = iter % ipe;
  uint64_t b0 = k * cfg->batch;
  uint64_t b1 = b0 + cfg->batch;
  if (b1 > cfg->samples_per_epoch) b1 = cfg->samples_per_epoch;
  uint64_t n = b1 - b0, p = (uint64_t)nranks, r = (uint64_t)rank;
  /* Contiguous blocks whose sizes differ by at most one: the partition is
   * exact for any p, even p > n (some ranks then get nothing). */
  *epoch = iter / ipe;
  *lo = b0 + n * r / p;
  *hi = b0 + n * (r + 1) / p;
}

static uint64_t burn_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

#define BURN_LANES 8

uint64_t burn_sample_hash(uint64_t sample, uint64_t epoch, uint64_t madds) {
  uint64_t seed = burn_mix64(sample * UINT64_C(0x9e3779b97f4a7c15) +
                             burn_mix64(epoch + UINT64_C(0x632be59bd9b4e019)));
  /* Eight independent chains keep the FPU busy (one chain would measure
   * latency, not throughput); x <- a*x + b converges to 1 from [0.5, 1),
   * so values stay normal and the bits still depend on every input. */
  double x[BURN_LANES];
  for (int l = 0; l < BURN_LANES; l++)
    x[l] = 0.5 + (double)(burn_mix64(seed + (uint64_t)l) >> 11) * 0x1.0p-54;
  const double a = 0.9999995, b = 0.0000005;
  uint64_t rounds = madds / BURN_LANES;
  for (uint64_t r = 0; r < rounds; r++)
    for (int l = 0; l < BURN_LANES; l++) x[l] = x[l] * a + b;
  for (uint64_t l = 0; l < madds % BURN_LANES; l++) x[l] = x[l] * a + b;
  uint64_t h = seed;
  for (int l = 0; l < BURN_LANES; l++) {
    uint64_t bits;
    memcpy(&bits, &x[l], sizeof bits);
    h = burn_mix64(h ^ bits);
  }
  return h;
}

/* ---- checkpoint ------------------------------------------------------ */

/* Byte offsets of the version 1 layout (docs/burn.md). */
enum {
  CK_MAGIC = 0,
  CK_VERSION = 8,
  CK_SIZE = 12,
  CK_NEXT_ITER = 16,
  CK_EPOCH = 24,
  CK_SAMPLES_DONE = 32,
  CK_CHECKSUM = 40,
  CK_SAMPLES = 48,
  CK_BATCH = 56,
  CK_EPOCHS = 64,
  CK_WORK = 72,
  CK_NRANKS = 80,
  CK_WRITTEN = 88,
  CK_PHASES = 96,
  CK_FNV = 224,
};
_Static_assert(CK_PHASES + BURN_PHASES_SPEC_MAX + 1 == CK_FNV, "layout");
_Static_assert(CK_FNV + 8 == BURN_CKPT_SIZE, "layout");

static void burn_put_u32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void burn_put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t burn_get_u32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}
static uint64_t burn_get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

/* FNV-1a 64: not cryptographic, but any torn write or flipped bit in a
 * file this small changes it. */
static uint64_t burn_fnv1a64(const uint8_t *p, size_t n) {
  uint64_t h = UINT64_C(0xcbf29ce484222325);
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= UINT64_C(0x100000001b3);
  }
  return h;
}

void burn_ckpt_encode(const burn_ckpt *ck, uint8_t buf[BURN_CKPT_SIZE]) {
  memset(buf, 0, BURN_CKPT_SIZE);
  memcpy(buf + CK_MAGIC, BURN_CKPT_MAGIC, 8);
  burn_put_u32(buf + CK_VERSION, BURN_CKPT_VERSION);
  burn_put_u32(buf + CK_SIZE, BURN_CKPT_SIZE);
  burn_put_u64(buf + CK_NEXT_ITER, ck->next_iter);
  burn_put_u64(buf + CK_EPOCH, ck->epoch);
  burn_put_u64(buf + CK_SAMPLES_DONE, ck->samples_done);
  burn_put_u64(buf + CK_CHECKSUM, ck->checksum);
  burn_put_u64(buf + CK_SAMPLES, ck->samples_per_epoch);
  burn_put_u64(buf + CK_BATCH, ck->batch);
  burn_put_u64(buf + CK_EPOCHS, ck->epochs);
  burn_put_u64(buf + CK_WORK, ck->work_madds);
  burn_put_u64(buf + CK_NRANKS, ck->nranks);
  burn_put_u64(buf + CK_WRITTEN, ck->written_ns);
  size_t n = strnlen(ck->phases_spec, BURN_PHASES_SPEC_MAX);
  memcpy(buf + CK_PHASES, ck->phases_spec, n);
  burn_put_u64(buf + CK_FNV, burn_fnv1a64(buf, CK_FNV));
}

int burn_ckpt_decode(const uint8_t *buf, size_t len, burn_ckpt *out,
                     char *why, size_t cap) {
  if (len < 8 || memcmp(buf + CK_MAGIC, BURN_CKPT_MAGIC, 8) != 0) {
    burn_why(why, cap, "not a paramount-burn checkpoint (bad magic)");
    return PM_ECORRUPT;
  }
  if (len < CK_SIZE + 4) {
    burn_why(why, cap, "truncated: %zu of %u bytes", len, BURN_CKPT_SIZE);
    return PM_ECORRUPT;
  }
  uint32_t version = burn_get_u32(buf + CK_VERSION);
  if (version != BURN_CKPT_VERSION) {
    burn_why(why, cap, "format version %u, this program reads version %u",
             version, BURN_CKPT_VERSION);
    return PM_ECORRUPT;
  }
  if (len < BURN_CKPT_SIZE) {
    burn_why(why, cap, "truncated: %zu of %u bytes", len, BURN_CKPT_SIZE);
    return PM_ECORRUPT;
  }
  if (len > BURN_CKPT_SIZE || burn_get_u32(buf + CK_SIZE) != BURN_CKPT_SIZE) {
    burn_why(why, cap, "wrong size: %zu bytes, version %u has %u", len,
             version, BURN_CKPT_SIZE);
    return PM_ECORRUPT;
  }
  if (burn_get_u64(buf + CK_FNV) != burn_fnv1a64(buf, CK_FNV)) {
    burn_why(why, cap, "file checksum mismatch: the file is corrupt");
    return PM_ECORRUPT;
  }
  burn_ckpt ck;
  memset(&ck, 0, sizeof ck);
  ck.next_iter = burn_get_u64(buf + CK_NEXT_ITER);
  ck.epoch = burn_get_u64(buf + CK_EPOCH);
  ck.samples_done = burn_get_u64(buf + CK_SAMPLES_DONE);
  ck.checksum = burn_get_u64(buf + CK_CHECKSUM);
  ck.samples_per_epoch = burn_get_u64(buf + CK_SAMPLES);
  ck.batch = burn_get_u64(buf + CK_BATCH);
  ck.epochs = burn_get_u64(buf + CK_EPOCHS);
  ck.work_madds = burn_get_u64(buf + CK_WORK);
  ck.nranks = burn_get_u64(buf + CK_NRANKS);
  ck.written_ns = burn_get_u64(buf + CK_WRITTEN);
  const uint8_t *ph = buf + CK_PHASES;
  const uint8_t *nul = memchr(ph, '\0', BURN_PHASES_SPEC_MAX + 1);
  if (nul == NULL) {
    burn_why(why, cap, "phase plan is not NUL-terminated");
    return PM_ECORRUPT;
  }
  /* NUL-padded (docs/burn.md): bytes after the plan are not ours to
   * ignore, so one checkpoint has exactly one encoding (fuzz_burn_ckpt). */
  for (const uint8_t *p = nul; p < ph + BURN_PHASES_SPEC_MAX + 1; p++)
    if (*p) {
      burn_why(why, cap, "phase plan padding is not zero");
      return PM_ECORRUPT;
    }
  /* The plan is quoted in messages: printable ASCII only. */
  for (const uint8_t *p = ph; p < nul; p++)
    if (*p < 0x20 || *p > 0x7e) {
      burn_why(why, cap, "phase plan holds a non-printable byte");
      return PM_ECORRUPT;
    }
  memcpy(ck.phases_spec, ph, BURN_PHASES_SPEC_MAX + 1);
  /* A file can pass the checksum and still be nonsense if it was written
   * by a buggy or foreign writer: check that the counters agree. */
  if (ck.samples_per_epoch == 0 || ck.samples_per_epoch > BURN_SAMPLES_MAX ||
      ck.batch == 0 || ck.batch > ck.samples_per_epoch || ck.epochs == 0 ||
      ck.epochs > BURN_EPOCHS_MAX) {
    burn_why(why, cap, "impossible configuration (samples %" PRIu64
                       ", batch %" PRIu64 ", epochs %" PRIu64 ")",
             ck.samples_per_epoch, ck.batch, ck.epochs);
    return PM_ECORRUPT;
  }
  uint64_t ipe = (ck.samples_per_epoch + ck.batch - 1) / ck.batch;
  if (ck.next_iter > ipe * ck.epochs || ck.epoch != ck.next_iter / ipe ||
      ck.samples_done !=
          burn_samples_before_sg(ck.samples_per_epoch, ck.batch,
                                 ck.next_iter)) {
    burn_why(why, cap,
             "inconsistent position (iteration %" PRIu64 ", epoch %" PRIu64
             ", samples %" PRIu64 ")",
             ck.next_iter, ck.epoch, ck.samples_done);
    return PM_ECORRUPT;
  }
  *out = ck;
  return 0;
}

int burn_ckpt_check_config(const burn_ckpt *ck, const burn_config *cfg,
                           char *why, size_t cap) {
  if (ck->samples_per_epoch != cfg->samples_per_epoch) {
    burn_why(why, cap,
             "written with --samples %" PRIu64 ", this run has --samples "
             "%" PRIu64,
             ck->samples_per_epoch, cfg->samples_per_epoch);
    return PM_EINVAL;
  }
  if (ck->batch != cfg->batch) {
    burn_why(why, cap,
             "written with global batch --batch %" PRIu64
             ", this run has --batch %" PRIu64,
             ck->batch, cfg->batch);
    return PM_EINVAL;
  }
  if (ck->work_madds != cfg->work_madds) {
    burn_why(why, cap,
             "written with --work %" PRIu64 ", this run has --work %" PRIu64,
             ck->work_madds, cfg->work_madds);
    return PM_EINVAL;
  }
  if (strcmp(ck->phases_spec, cfg->phases_spec) != 0) {
    burn_why(why, cap,
             "written with --phases %s, this run has --phases %s",
             ck->phases_spec, cfg->phases_spec);
    return PM_EINVAL;
  }
  if (ck->next_iter > burn_total_iters(cfg)) {
    burn_why(why, cap,
             "its iteration %" PRIu64 " is beyond this run's %" PRIu64
             " iterations (--epochs %" PRIu64 ")",
             ck->next_iter, burn_total_iters(cfg), cfg->epochs);
    return PM_EINVAL;
  }
  return 0;
}

int burn_ckpt_write(const char *path, const burn_ckpt *ck, char *why,
                    size_t cap) {
  uint8_t buf[BURN_CKPT_SIZE];
  burn_ckpt_encode(ck, buf);
  char tmp[BURN_PATH_MAX + 32];
  if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >=
      (int)sizeof tmp) {
    burn_why(why, cap, "path too long");
    return PM_EINVAL;
  }
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    burn_why(why, cap, "cannot create %s: %s", tmp, strerror(errno));
    return PM_EIO;
  }
  size_t done = 0;
  while (done < sizeof buf) {
    ssize_t n = write(fd, buf + done, sizeof buf - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      burn_why(why, cap, "cannot write %s: %s", tmp,
               n < 0 ? strerror(errno) : "short write");
      goto fail_fd;
    }
    done += (size_t)n;
  }
  if (fsync(fd) != 0) {
    burn_why(why, cap, "cannot fsync %s: %s", tmp, strerror(errno));
    goto fail_fd;
  }
  if (close(fd) != 0) {
    burn_why(why, cap, "cannot close %s: %s", tmp, strerror(errno));
    goto fail_tmp;
  }
  if (rename(tmp, path) != 0) {
    burn_why(why, cap, "cannot rename %s to %s: %s", tmp, path,
             strerror(errno));
    goto fail_tmp;
  }
  /* The rename survives a crash only once the directory is synced too. */
  char dir[BURN_PATH_MAX + 1];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == dir) slash[1] = '\0';
  else if (slash) *slash = '\0';
  else snprintf(dir, sizeof dir, ".");
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)fsync(dfd);
    close(dfd);
  }
  return 0;
fail_fd:
  close(fd);
fail_tmp:
  unlink(tmp);
  return PM_EIO;
}

int burn_ckpt_read(const char *path, burn_ckpt *out, char *why, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    burn_why(why, cap, "cannot open: %s", strerror(e));
    return e == ENOENT ? PM_ENOENT : PM_EIO;
  }
  /* One byte more than a checkpoint holds, to tell "too long" apart. */
  uint8_t buf[BURN_CKPT_SIZE + 1];
  size_t len = 0;
  while (len < sizeof buf) {
    ssize_t n = read(fd, buf + len, sizeof buf - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      burn_why(why, cap, "cannot read: %s", strerror(errno));
      close(fd);
      return PM_EIO;
    }
    if (n == 0) break;
    len += (size_t)n;
  }
  close(fd);
  if (len == 0) {
    burn_why(why, cap, "empty file");
    return PM_ECORRUPT;
  }
  return burn_ckpt_decode(buf, len, out, why, cap);
}
