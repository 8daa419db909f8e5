/* local.c - the local provider: this machine as a small cloud of emulated
 * instances.  A node is a cgroup with a CPU quota and a memory limit, a
 * working directory under RUN/nodes/<id>/work and a simulated boot delay,
 * so heterogeneous types really are faster or slower.  Without usable
 * cgroups a per-node supervisor throttles the node's processes by duty
 * cycle (SIGSTOP/SIGCONT) instead.
 *
 * Every fact about a node is on disk (RUN/nodes/<id>/node.json, written
 * atomically, and the run's journal, written before anything is created),
 * so a process that never started the node (`paramount down` after the
 * controller was SIGKILLed) can find and remove everything it had.  A
 * host-wide registry of runs (/run/paramount/runs) lets any later start
 * collect the empty node cgroups of a run whose directory was deleted.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/journal.h"
#include "common/log.h"
#include "common/util.h"
#include "paramount.h"
#include "provider.h"

#define LOCAL_MAX_CG 3             /* cpu, cpuacct, memory (v1) or one (v2) */
#define LOCAL_PERIOD_US 100000     /* duty-cycle period */
/* CFS period.  Short, so that a rank that spins while it waits in an
 * allreduce (as MPI ranks do) overdraws its quota by at most a few ms
 * instead of the 100 ms default: a long period would tax the next
 * iteration's compute and blur the speed difference between types. */
#define LOCAL_CFS_PERIOD_US 10000
#define LOCAL_CFS_MIN_QUOTA_US 1000 /* the kernel's floor */
#define LOCAL_REC_MAX (64 * 1024)  /* largest node.json we read */
#define LOCAL_ENVIRON_MAX (256 * 1024)
#define LOCAL_KILL_TIMEOUT_S 10.0
/* The host's registry of runs that have node cgroups: run key -> run
 * directory (see "the run registry" below).  Under /run, which is empty
 * after a reboot exactly like cgroupfs. */
#define LOCAL_REG_DIR "/run/paramount/runs"
#define LOCAL_REG_MAX (64 * 1024) /* largest registry entry we read */
#define LOCAL_REG_BASES 16        /* cgroup bases one entry remembers */
/* A node cgroup no registry entry explains (made by a build from before
 * the registry) is collected once empty and this old: such a build may
 * be creating it right now and not yet have put a process in it. */
#define LOCAL_UNREG_GRACE_S 120.0

typedef enum { THR_CGROUP_V1, THR_CGROUP_V2, THR_DUTYCYCLE } local_throttle;

static const char *const local_throttle_names[] = {"cgroup-v1", "cgroup-v2",
                                                   "dutycycle"};

/* One node's record: node.json. */
typedef struct {
  char id[PROVIDER_ID_MAX];
  char type[CATALOG_NAME_MAX];
  provider_node_state state;
  double requested_s, boot_until_s, booted_s, staged_s, ready_s, terminated_s;
  double price_usd_per_hour, billing_granularity_s, billing_minimum_s;
  double cpu_fraction, memory_limit_mib;
  unsigned vcpus, threads;
  double stage_bytes, stage_s;
  local_throttle throttle;
  int ncg;
  char cg[LOCAL_MAX_CG][PATH_MAX]; /* the node's cgroup in each hierarchy */
  long sup_pid;                    /* duty-cycle supervisor, 0 if none */
  unsigned long long sup_start;    /* its start time, against pid reuse */
} local_rec;

/* Where nodes' cgroups go on this host, found once per process. */
typedef struct {
  local_throttle mode;
  int nh;
  char base[LOCAL_MAX_CG][PATH_MAX]; /* .../paramount, one per hierarchy */
  char ctl[LOCAL_MAX_CG][16];        /* "cpu", "cpuacct", "memory", "v2" */
  char why[512];                     /* why cgroups are not used */
} local_cg_env;

typedef struct {
  char run_dir[PATH_MAX];
  char run_key[128]; /* cgroup-safe, unique per run directory */
  char bin[PATH_MAX];
  const catalog *cat;
  int force;
  journal *j;
  local_cg_env cg;
} local_impl;

/* ---- small helpers -------------------------------------------------- */

static int local_err(char *err, size_t cap, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int local_err(char *err, size_t cap, int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (err && cap) vsnprintf(err, cap, fmt, ap);
  va_end(ap);
  return rc;
}

/* snprintf for messages and paths whose truncation is harmless or checked
 * elsewhere (path lengths are bounded when the run directory is opened). */
static void local_fmt(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void local_fmt(char *buf, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, cap, fmt, ap);
  va_end(ap);
}

static void local_sleep_s(double s) {
  if (!(s > 0)) return;
  struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static int local_write_str(const char *path, const char *s) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = write(fd, s, strlen(s));
  int e = errno;
  close(fd);
  errno = e;
  return n == (ssize_t)strlen(s) ? 0 : -1;
}

static int local_read_small(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, cap - 1);
  close(fd);
  if (n < 0) return -1;
  buf[n] = '\0';
  return (int)n;
}

/* Node ids are host names Open MPI must accept and path components we
 * must not escape from: a letter then letters, digits, '-'. */
static int local_id_valid(const char *id) {
  size_t n = strlen(id);
  if (n == 0 || n >= PROVIDER_ID_MAX || !isalpha((unsigned char)id[0])) return 0;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)id[i]) && id[i] != '-') return 0;
  return 1;
}

static uint32_t local_hash(const char *s) {
  uint32_t h = 2166136261u; /* FNV-1a: two runs named alike stay apart */
  for (const char *p = s; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
  return h;
}

/* The node's private /tmp.  Open MPI keeps its session directory (and
 * PMIx's Unix sockets, whose paths must stay under 108 bytes) in TMPDIR;
 * daemons of different nodes sharing one host's /tmp race to create and
 * remove the same directories, so each node gets its own, short path. */
static void local_tmpdir(const char *run_dir, const char *id, char *out, size_t cap) {
  snprintf(out, cap, "/tmp/pm-%08x-%s", local_hash(run_dir), id);
}

static int local_rm_entry(const char *path, const struct stat *st, int flag,
                          struct FTW *ftw) {
  (void)st;
  (void)ftw;
  return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void local_tmpdir_remove(const char *run_dir, const char *id) {
  char t[128];
  local_tmpdir(run_dir, id, t, sizeof t);
  nftw(t, local_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void local_run_key(const char *run_dir, char *key, size_t cap) {
  const char *base = strrchr(run_dir, '/');
  base = base ? base + 1 : run_dir;
  uint32_t h = local_hash(run_dir);
  char clean[64];
  size_t k = 0;
  for (const char *p = base; *p && k < sizeof clean - 1; p++)
    clean[k++] = (isalnum((unsigned char)*p) || *p == '-' || *p == '.') ? *p : '_';
  clean[k] = '\0';
  snprintf(key, cap, "%s-%08x", k ? clean : "run", h);
}

static unsigned long long local_proc_start(long pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  if (local_read_small(path, buf, sizeof buf) <= 0) return 0;
  char *p = strrchr(buf, ')'); /* comm may hold spaces */
  if (!p) return 0;
  unsigned long long v = 0;
  int field = 2;
  for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
    field++;
    if (field == 3 && tok[0] == 'Z') return 0; /* a zombie has no life left */
    if (field == 22) {
      v = strtoull(tok, NULL, 10);
      break;
    }
  }
  return v;
}

static unsigned local_host_cores(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
    return (unsigned)CPU_COUNT(&set);
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (unsigned)n : 1;
}

static unsigned local_threads_for(double cpu_fraction) {
  /* A rank that starts more threads than its share of cores only
   * time-slices against its own quota. */
  double t = ceil(cpu_fraction - 1e-9);
  return t < 1 ? 1 : (unsigned)t;
}

/* ---- paths and records --------------------------------------------- */

static int local_path(char *out, size_t cap, const char *run_dir,
                      const char *id, const char *leaf) {
  const char *sep = leaf ? "/" : "";
  if (!leaf) leaf = "";
  size_t need = strlen(run_dir) + strlen("/nodes/") + (id ? strlen(id) : 0) + 1 +
                strlen(leaf) + 1;
  if (need > cap) return PM_EINVAL;
  if (id) local_fmt(out, cap, "%s/nodes/%s%s%s", run_dir, id, sep, leaf);
  else local_fmt(out, cap, "%s/nodes%s%s", run_dir, sep, leaf);
  return 0;
}

static json_object *local_rec_to_json(const local_rec *r) {
  json_object *o = json_object_new_object();
  json_object_object_add(o, "id", json_object_new_string(r->id));
  json_object_object_add(o, "type", json_object_new_string(r->type));
  json_object_object_add(o, "state", json_object_new_string(provider_state_name(r->state)));
  json_object_object_add(o, "provider", json_object_new_string("local"));
  json_object_object_add(o, "requested_s", json_object_new_double(r->requested_s));
  json_object_object_add(o, "boot_until_s", json_object_new_double(r->boot_until_s));
  json_object_object_add(o, "booted_s", json_object_new_double(r->booted_s));
  json_object_object_add(o, "staged_s", json_object_new_double(r->staged_s));
  json_object_object_add(o, "ready_s", json_object_new_double(r->ready_s));
  json_object_object_add(o, "terminated_s", json_object_new_double(r->terminated_s));
  json_object_object_add(o, "price_usd_per_hour", json_object_new_double(r->price_usd_per_hour));
  json_object_object_add(o, "billing_granularity_s", json_object_new_double(r->billing_granularity_s));
  json_object_object_add(o, "billing_minimum_s", json_object_new_double(r->billing_minimum_s));
  json_object_object_add(o, "cpu_fraction", json_object_new_double(r->cpu_fraction));
  json_object_object_add(o, "memory_limit_mib", json_object_new_double(r->memory_limit_mib));
  json_object_object_add(o, "vcpus", json_object_new_int((int)r->vcpus));
  json_object_object_add(o, "threads", json_object_new_int((int)r->threads));
  json_object_object_add(o, "stage_bytes", json_object_new_double(r->stage_bytes));
  json_object_object_add(o, "stage_s", json_object_new_double(r->stage_s));
  json_object_object_add(o, "throttle", json_object_new_string(local_throttle_names[r->throttle]));
  json_object *cg = json_object_new_array();
  for (int i = 0; i < r->ncg; i++) json_object_array_add(cg, json_object_new_string(r->cg[i]));
  json_object_object_add(o, "cgroups", cg);
  json_object_object_add(o, "supervisor_pid", json_object_new_int64(r->sup_pid));
  json_object_object_add(o, "supervisor_start", json_object_new_int64((int64_t)r->sup_start));
  return o;
}

static double local_jd(json_object *o, const char *k) {
  json_object *v;
  return json_object_object_get_ex(o, k, &v) ? json_object_get_double(v) : 0;
}

static const char *local_js(json_object *o, const char *k) {
  json_object *v;
  return json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string)
             ? json_object_get_string(v)
             : NULL;
}

/* Fills what a record and a journal node_request have in common. */
static int local_rec_from_json(json_object *o, local_rec *r) {
  memset(r, 0, sizeof *r);
  const char *id = local_js(o, "id"), *type = local_js(o, "type");
  if (!id || !local_id_valid(id)) return PM_ECORRUPT;
  snprintf(r->id, sizeof r->id, "%s", id);
  snprintf(r->type, sizeof r->type, "%s", type ? type : "?");
  int st = provider_state_parse(local_js(o, "state"));
  r->state = st < 0 ? NODE_REQUESTED : (provider_node_state)st;
  r->requested_s = local_jd(o, "requested_s");
  r->boot_until_s = local_jd(o, "boot_until_s");
  r->booted_s = local_jd(o, "booted_s");
  r->staged_s = local_jd(o, "staged_s");
  r->ready_s = local_jd(o, "ready_s");
  r->terminated_s = local_jd(o, "terminated_s");
  r->price_usd_per_hour = local_jd(o, "price_usd_per_hour");
  r->billing_granularity_s = local_jd(o, "billing_granularity_s");
  r->billing_minimum_s = local_jd(o, "billing_minimum_s");
  r->cpu_fraction = local_jd(o, "cpu_fraction");
  r->memory_limit_mib = local_jd(o, "memory_limit_mib");
  r->vcpus = (unsigned)local_jd(o, "vcpus");
  r->threads = (unsigned)local_jd(o, "threads");
  r->stage_bytes = local_jd(o, "stage_bytes");
  r->stage_s = local_jd(o, "stage_s");
  const char *thr = local_js(o, "throttle");
  r->throttle = THR_DUTYCYCLE;
  for (int i = 0; i < 3; i++)
    if (thr && !strcmp(thr, local_throttle_names[i])) r->throttle = (local_throttle)i;
  json_object *cg;
  if (json_object_object_get_ex(o, "cgroups", &cg) && json_object_is_type(cg, json_type_array)) {
    size_t n = json_object_array_length(cg);
    for (size_t i = 0; i < n && r->ncg < LOCAL_MAX_CG; i++) {
      const char *s = json_object_get_string(json_object_array_get_idx(cg, i));
      /* Only ever rmdir or kill inside a cgroup tree we could have made. */
      if (!s || strncmp(s, "/sys/fs/cgroup/", 15) || !strstr(s, "/paramount/") ||
          strstr(s, "/../"))
        return PM_ECORRUPT;
      snprintf(r->cg[r->ncg++], PATH_MAX, "%s", s);
    }
  }
  r->sup_pid = (long)local_jd(o, "supervisor_pid");
  r->sup_start = (unsigned long long)local_jd(o, "supervisor_start");
  return 0;
}

static int local_rec_load(const char *run_dir, const char *id, local_rec *r) {
  char path[PATH_MAX];
  if (!local_id_valid(id) || local_path(path, sizeof path, run_dir, id, "node.json"))
    return PM_EINVAL;
  char *text = NULL;
  int rc = util_read_file(path, LOCAL_REC_MAX, &text, NULL);
  if (rc) return rc;
  json_object *o = json_tokener_parse(text);
  free(text);
  if (!o) return PM_ECORRUPT;
  rc = local_rec_from_json(o, r);
  json_object_put(o);
  return rc;
}

static int local_rec_save(const char *run_dir, const local_rec *r) {
  char path[PATH_MAX];
  if (local_path(path, sizeof path, run_dir, r->id, "node.json")) return PM_EINVAL;
  json_object *o = local_rec_to_json(r);
  const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);
  int rc = util_write_file_atomic(path, s, strlen(s));
  json_object_put(o);
  return rc;
}

/* The clock decides when a simulated boot is over, so any process can see
 * it; the first one that notices writes it down. */
static provider_node_state local_rec_observed(const local_rec *r, double now) {
  if (r->state == NODE_BOOTING && now >= r->boot_until_s) return NODE_BOOTED;
  return r->state;
}

/* Serialises record updates of one run across processes. */
static int local_lock(const char *run_dir) {
  char path[PATH_MAX];
  if (local_path(path, sizeof path, run_dir, NULL, NULL)) return -1;
  util_mkdir_p(path);
  if (local_path(path, sizeof path, run_dir, NULL, ".lock")) return -1;
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  while (flock(fd, LOCK_EX) != 0)
    if (errno != EINTR) {
      close(fd);
      return -1;
    }
  return fd;
}

static void local_unlock(int fd) {
  if (fd >= 0) close(fd); /* closing releases the flock */
}

static int local_journal_node(journal *j, const char *ev, const local_rec *r,
                              double t, json_object *extra, int sync) {
  json_object *o = extra ? extra : json_object_new_object();
  json_object_object_add(o, "ev", json_object_new_string(ev));
  json_object_object_add(o, "t", json_object_new_double(t));
  json_object_object_add(o, "node", json_object_new_string(r->id));
  json_object_object_add(o, "type", json_object_new_string(r->type));
  int rc = journal_append(j, o);
  json_object_put(o);
  if (!rc) rc = sync ? journal_sync(j) : journal_flush(j);
  return rc;
}

/* ---- cgroups --------------------------------------------------------- */

/* The mount point of the hierarchy holding `ctl` (v1) or of cgroup2
 * (ctl == NULL), from /proc/self/mounts. */
static int local_cg_mount(const char *ctl, char *out, size_t cap) {
  FILE *f = fopen("/proc/self/mounts", "re");
  if (!f) return -1;
  char line[4096];
  int found = -1;
  while (found && fgets(line, sizeof line, f)) {
    char dev[256], dir[PATH_MAX], type[64], opts[2048];
    if (sscanf(line, "%255s %4095s %63s %2047s", dev, dir, type, opts) != 4) continue;
    if (ctl ? strcmp(type, "cgroup") : strcmp(type, "cgroup2")) continue;
    if (ctl) {
      int has = 0;
      for (char *tok = strtok(opts, ","); tok; tok = strtok(NULL, ","))
        if (!strcmp(tok, ctl)) has = 1;
      if (!has) continue;
    } else {
      char p[PATH_MAX + 32], buf[512];
      snprintf(p, sizeof p, "%s/cgroup.controllers", dir);
      if (local_read_small(p, buf, sizeof buf) < 0 || !strstr(buf, "cpu")) continue;
    }
    snprintf(out, cap, "%s", dir);
    found = 0;
  }
  fclose(f);
  return found;
}

/* This process's own cgroup in the hierarchy of `ctl` (NULL: v2), so
 * nodes nest below it and limits put on Paramount itself still hold. */
static void local_cg_self(const char *ctl, char *out, size_t cap) {
  snprintf(out, cap, "/");
  FILE *f = fopen("/proc/self/cgroup", "re");
  if (!f) return;
  char line[4096];
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    char *c1 = strchr(line, ':');
    char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2) continue;
    *c2 = '\0';
    const char *ctls = c1 + 1, *path = c2 + 1;
    int match = 0;
    if (!ctl) match = !*ctls && !strcmp(line, "0");
    else {
      char tmp[256];
      snprintf(tmp, sizeof tmp, "%s", ctls);
      for (char *tok = strtok(tmp, ","); tok; tok = strtok(NULL, ","))
        if (!strcmp(tok, ctl)) match = 1;
    }
    if (match) {
      snprintf(out, cap, "%s", path);
      break;
    }
  }
  fclose(f);
}

static void local_join(char *out, size_t cap, const char *a, const char *b) {
  /* Avoid "//" when b is the root cgroup "/". */
  if (!strcmp(b, "/")) b = "";
  snprintf(out, cap, "%s%s", a, b);
}

static int local_cg_env_v1(local_cg_env *e) {
  static const char *const ctls[] = {"cpu", "cpuacct", "memory"};
  char mounts[LOCAL_MAX_CG][PATH_MAX];
  e->nh = 0;
  for (int i = 0; i < 3; i++) {
    char m[PATH_MAX], self[PATH_MAX], p[PATH_MAX * 2];
    if (local_cg_mount(ctls[i], m, sizeof m) != 0) {
      if (i == 1) continue; /* cpuacct is only for measuring */
      snprintf(e->why, sizeof e->why, "no cgroup v1 '%s' hierarchy mounted", ctls[i]);
      return -1;
    }
    int dup = 0; /* "cpu,cpuacct" co-mounted: one directory serves both */
    for (int k = 0; k < e->nh; k++)
      if (!strcmp(mounts[k], m)) dup = 1;
    if (dup) continue;
    local_cg_self(ctls[i], self, sizeof self);
    local_join(p, sizeof p, m, self);
    if (snprintf(e->base[e->nh], PATH_MAX, "%s/paramount", p) >= PATH_MAX) return -1;
    if (i == 0) {
      char q[PATH_MAX * 2 + 32];
      snprintf(q, sizeof q, "%s/cpu.cfs_quota_us", p);
      if (access(q, F_OK) != 0) {
        local_fmt(e->why, sizeof e->why, "%s has no cpu.cfs_quota_us", p);
        return -1;
      }
    }
    if (util_mkdir_p(e->base[e->nh]) != 0) {
      snprintf(e->why, sizeof e->why, "cannot create %s: %s", e->base[e->nh],
               strerror(errno));
      return -1;
    }
    snprintf(mounts[e->nh], PATH_MAX, "%s", m);
    snprintf(e->ctl[e->nh], sizeof e->ctl[0], "%s", ctls[i]);
    e->nh++;
  }
  e->mode = THR_CGROUP_V1;
  return 0;
}

static int local_cg_env_v2(local_cg_env *e) {
  char m[PATH_MAX], self[PATH_MAX], p[PATH_MAX * 2], q[PATH_MAX * 2 + 64];
  if (local_cg_mount(NULL, m, sizeof m) != 0) {
    snprintf(e->why, sizeof e->why, "no cgroup2 hierarchy with the cpu controller");
    return -1;
  }
  local_cg_self(NULL, self, sizeof self);
  local_join(p, sizeof p, m, self);
  local_fmt(e->base[0], PATH_MAX, "%s/paramount", p);
  if (util_mkdir_p(e->base[0]) != 0) {
    local_fmt(e->why, sizeof e->why, "cannot create %s: %s", e->base[0], strerror(errno));
    return -1;
  }
  /* v2 hands controllers down level by level; a parent holding processes
   * cannot (no internal processes rule), which we report as unusable. */
  snprintf(q, sizeof q, "%s/cgroup.subtree_control", p);
  local_write_str(q, "+cpu +memory");
  snprintf(q, sizeof q, "%s/cgroup.subtree_control", e->base[0]);
  if (local_write_str(q, "+cpu +memory") != 0) {
    local_fmt(e->why, sizeof e->why, "cannot enable cpu and memory controllers in %s: %s",
             e->base[0], strerror(errno));
    return -1;
  }
  snprintf(e->ctl[0], sizeof e->ctl[0], "v2");
  e->nh = 1;
  e->mode = THR_CGROUP_V2;
  return 0;
}

/* Chooses how to throttle: PARAMOUNT_LOCAL_THROTTLE=cgroup|dutycycle|auto
 * (default auto: cgroups when usable). */
static int local_cg_env_init(local_cg_env *e, char *err, size_t cap) {
  memset(e, 0, sizeof *e);
  const char *want = getenv("PARAMOUNT_LOCAL_THROTTLE");
  if (!want || !*want) want = "auto";
  if (strcmp(want, "auto") && strcmp(want, "cgroup") && strcmp(want, "dutycycle"))
    return local_err(err, cap, PM_EINVAL,
                     "PARAMOUNT_LOCAL_THROTTLE='%s': must be auto, cgroup or dutycycle", want);
  if (!strcmp(want, "dutycycle")) {
    snprintf(e->why, sizeof e->why, "PARAMOUNT_LOCAL_THROTTLE=dutycycle");
    e->mode = THR_DUTYCYCLE;
    return 0;
  }
  char why1[512] = "";
  if (local_cg_env_v1(e) == 0) return 0;
  snprintf(why1, sizeof why1, "%s", e->why);
  if (local_cg_env_v2(e) == 0) return 0;
  if (!strcmp(want, "cgroup"))
    return local_err(err, cap, PM_ENOTSUP, "cgroups unavailable: %s; %s", why1, e->why);
  char why2[512];
  local_fmt(why2, sizeof why2, "%s; %s", why1, e->why);
  snprintf(e->why, sizeof e->why, "%s", why2);
  e->nh = 0;
  e->mode = THR_DUTYCYCLE;
  return 0;
}

/* Creates the node's cgroups and sets its limits; fills r->cg. */
static int local_cg_create(const local_cg_env *e, const char *run_key,
                           local_rec *r, char *err, size_t cap) {
  for (int i = 0; i < e->nh; i++) {
    char *dir = r->cg[i], f[PATH_MAX + 64], v[64];
    if (snprintf(dir, PATH_MAX, "%s/%s/%s", e->base[i], run_key, r->id) >= PATH_MAX)
      return local_err(err, cap, PM_EINVAL, "cgroup path too long");
    r->ncg = i + 1;
    if (util_mkdir_p(dir) != 0)
      return local_err(err, cap, PM_ESYS, "cannot create cgroup %s: %s", dir, strerror(errno));
    /* A fraction whose quota would fall under the kernel's floor gets a
     * longer period instead of a silently larger share. */
    long period_us = LOCAL_CFS_PERIOD_US;
    if (r->cpu_fraction * period_us < LOCAL_CFS_MIN_QUOTA_US)
      period_us = lround(ceil(LOCAL_CFS_MIN_QUOTA_US / r->cpu_fraction));
    if (period_us > 1000000) period_us = 1000000; /* the kernel's ceiling */
    long quota_us = lround(r->cpu_fraction * period_us);
    if (quota_us < LOCAL_CFS_MIN_QUOTA_US) quota_us = LOCAL_CFS_MIN_QUOTA_US;
    unsigned long long mem_b = (unsigned long long)(r->memory_limit_mib * 1048576.0);
    int bad = 0;
    if (!strcmp(e->ctl[i], "cpu")) {
      snprintf(f, sizeof f, "%s/cpu.cfs_period_us", dir);
      /* Quota first to "unlimited": a period shorter than the current
       * quota would be refused while that quota stands. */
      snprintf(f, sizeof f, "%s/cpu.cfs_quota_us", dir);
      bad = local_write_str(f, "-1");
      snprintf(f, sizeof f, "%s/cpu.cfs_period_us", dir);
      snprintf(v, sizeof v, "%ld", period_us);
      if (!bad) bad = local_write_str(f, v);
      if (!bad) {
        snprintf(f, sizeof f, "%s/cpu.cfs_quota_us", dir);
        snprintf(v, sizeof v, "%ld", quota_us);
        bad = local_write_str(f, v);
      }
    } else if (!strcmp(e->ctl[i], "memory")) {
      snprintf(f, sizeof f, "%s/memory.limit_in_bytes", dir);
      snprintf(v, sizeof v, "%llu", mem_b);
      bad = local_write_str(f, v);
    } else if (!strcmp(e->ctl[i], "v2")) {
      snprintf(f, sizeof f, "%s/cpu.max", dir);
      snprintf(v, sizeof v, "%ld %ld", quota_us, period_us);
      bad = local_write_str(f, v);
      if (!bad) {
        snprintf(f, sizeof f, "%s/memory.max", dir);
        snprintf(v, sizeof v, "%llu", mem_b);
        bad = local_write_str(f, v);
      }
    }
    if (bad)
      return local_err(err, cap, PM_ESYS, "cannot write %s: %s", f, strerror(errno));
  }
  return 0;
}

/* ---- the run registry and stale node cgroups ------------------------- */

/* A node cgroup is .../paramount/<run key>/<id>, and a key alone does not
 * say where its run directory is.  So before a run's first node cgroup
 * exists, the run writes LOCAL_REG_DIR/<key>: its run directory and every
 * cgroup base its nodes are made under (each process nests nodes below
 * its own cgroup, so the bases of one run's processes can differ).  /run
 * and cgroupfs both start empty at boot: the registry never outlives the
 * cgroups it describes.  Whoever counts the cores in use removes the
 * empty node cgroups whose run is gone; one that still holds a process is
 * never touched (rmdir would refuse it anyway) and nothing is killed. */
typedef struct {
  char run_dir[PATH_MAX];
  int nbase;
  char base[LOCAL_REG_BASES][PATH_MAX];
} local_reg;

/* What counting found: the quotas of the node cgroups that stay, and the
 * stale ones that could not go because processes still run in them. */
typedef struct {
  double cores;
  unsigned held;
  char held_why[640]; /* "node n1 of run K (...) ...; ...", for the refusal */
} local_usage;

/* Key/id pairs already judged: a node shows up once per hierarchy. */
typedef struct {
  char (*v)[160];
  size_t n, cap;
} local_seen;

/* A run key as local_run_key makes it: letters, digits, '-', '.', '_',
 * then '-' and 8 lowercase hex digits.  Every key read from cgroupfs or
 * the registry is checked before it becomes part of a path. */
static int local_key_valid(const char *key) {
  size_t n = strlen(key);
  if (n < 10 || n >= 128) return 0;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)key[i]) && !strchr("-._", key[i])) return 0;
  if (key[n - 9] != '-') return 0;
  for (size_t i = n - 8; i < n; i++)
    if (!isdigit((unsigned char)key[i]) && !(key[i] >= 'a' && key[i] <= 'f')) return 0;
  return 1;
}

/* Only ever rmdir inside a cgroup tree we could have made. */
static int local_cg_base_valid(const char *s) {
  size_t n = strlen(s), t = strlen("/paramount");
  return n >= strlen("/sys/fs/cgroup/paramount") && n < PATH_MAX &&
         !strncmp(s, "/sys/fs/cgroup/", 15) && !strcmp(s + n - t, "/paramount") &&
         !strstr(s, "/../") && !strstr(s, "/./") && !strstr(s, "//");
}

static int local_run_gone(const char *run_dir) {
  struct stat st;
  return stat(run_dir, &st) != 0 && (errno == ENOENT || errno == ENOTDIR);
}

/* Reads key's registry entry.  PM_ENOENT: none; PM_ECORRUPT: one not to
 * trust (bad JSON, a base outside cgroupfs, or a run directory whose key
 * is not this one). */
static int local_reg_load(const char *key, local_reg *g) {
  char path[PATH_MAX], k2[128], *text = NULL;
  g->run_dir[0] = '\0';
  g->nbase = 0;
  local_fmt(path, sizeof path, "%s/%s", LOCAL_REG_DIR, key);
  int rc = util_read_file(path, LOCAL_REG_MAX, &text, NULL);
  if (rc) return rc == PM_ENOENT ? PM_ENOENT : PM_ECORRUPT;
  json_object *o = json_tokener_parse(text), *arr;
  free(text);
  rc = PM_ECORRUPT;
  const char *run = o ? local_js(o, "run_dir") : NULL;
  if (!run || run[0] != '/' || strlen(run) >= sizeof g->run_dir) goto done;
  local_run_key(run, k2, sizeof k2);
  if (strcmp(k2, key)) goto done;
  if (json_object_object_get_ex(o, "cgroup_bases", &arr) &&
      json_object_is_type(arr, json_type_array)) {
    size_t n = json_object_array_length(arr);
    for (size_t i = 0; i < n && g->nbase < LOCAL_REG_BASES; i++) {
      json_object *b = json_object_array_get_idx(arr, i);
      const char *s = json_object_is_type(b, json_type_string) ? json_object_get_string(b) : NULL;
      if (!s || !local_cg_base_valid(s)) goto done;
      snprintf(g->base[g->nbase++], PATH_MAX, "%s", s);
    }
  }
  snprintf(g->run_dir, sizeof g->run_dir, "%s", run);
  rc = 0;
done:
  json_object_put(o);
  if (rc) g->nbase = 0;
  return rc;
}

/* Makes sure the registry maps this run's key to its directory and names
 * this process's cgroup bases.  Called under the run's lock, before the
 * node's cgroups exist, so no collector ever sees them unregistered. */
static int local_reg_add(const local_impl *li, char *err, size_t cap) {
  local_reg *g = malloc(sizeof *g);
  if (!g) return local_err(err, cap, PM_ENOMEM, "out of memory");
  int dirty = local_reg_load(li->run_key, g) != 0 || strcmp(g->run_dir, li->run_dir);
  if (dirty) {
    g->nbase = 0;
    snprintf(g->run_dir, sizeof g->run_dir, "%s", li->run_dir);
  }
  for (int i = 0; i < li->cg.nh; i++) {
    int have = 0;
    for (int k = 0; k < g->nbase; k++)
      if (!strcmp(g->base[k], li->cg.base[i])) have = 1;
    if (have || !local_cg_base_valid(li->cg.base[i])) continue;
    if (g->nbase == LOCAL_REG_BASES) { /* the oldest base goes */
      memmove(g->base[0], g->base[1], (LOCAL_REG_BASES - 1) * sizeof g->base[0]);
      g->nbase--;
    }
    snprintf(g->base[g->nbase++], PATH_MAX, "%s", li->cg.base[i]);
    dirty = 1;
  }
  int rc = 0;
  if (dirty) {
    char path[PATH_MAX];
    local_fmt(path, sizeof path, "%s/%s", LOCAL_REG_DIR, li->run_key);
    json_object *o = json_object_new_object(), *arr = json_object_new_array();
    json_object_object_add(o, "run_dir", json_object_new_string(g->run_dir));
    for (int k = 0; k < g->nbase; k++)
      json_object_array_add(arr, json_object_new_string(g->base[k]));
    json_object_object_add(o, "cgroup_bases", arr);
    const char *s = json_object_to_json_string_ext(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    if (util_mkdir_p(LOCAL_REG_DIR) != 0)
      rc = local_err(err, cap, PM_ESYS, "cannot create %s: %s", LOCAL_REG_DIR, strerror(errno));
    else if ((rc = util_write_file_atomic(path, s, strlen(s))) != 0)
      local_err(err, cap, rc, "cannot register run %s in %s: %s", li->run_key, path,
                pm_strerror(rc));
    json_object_put(o);
  }
  free(g);
  return rc;
}

/* Removes key's registry entry once none of its bases holds a cgroup of
 * the run.  only_if_gone: and only when its run directory is gone too, for
 * a caller not holding the run's lock (the run may be starting a node). */
static void local_reg_prune(const char *key, int only_if_gone) {
  local_reg *g = malloc(sizeof *g);
  if (!g) return;
  /* A damaged entry stays: local_reg_add rewrites it. */
  int keep = local_reg_load(key, g) != 0 || (only_if_gone && !local_run_gone(g->run_dir));
  for (int i = 0; i < g->nbase && !keep; i++) {
    char p[PATH_MAX * 2];
    local_fmt(p, sizeof p, "%s/%s", g->base[i], key);
    if (access(p, F_OK) == 0) keep = 1;
  }
  if (!keep) {
    char path[PATH_MAX];
    local_fmt(path, sizeof path, "%s/%s", LOCAL_REG_DIR, key);
    unlink(path);
  }
  free(g);
}

/* 1 if key/id was judged already, else remembers it. */
static int local_seen_check(local_seen *s, const char *key, const char *id) {
  char k[160];
  local_fmt(k, sizeof k, "%s/%s", key, id);
  for (size_t i = 0; i < s->n; i++)
    if (!strcmp(s->v[i], k)) return 1;
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 64;
    void *nv = realloc(s->v, cap * sizeof *s->v);
    if (!nv) return 0; /* judged twice at worst: counted twice, never lost */
    s->v = nv;
    s->cap = cap;
  }
  memcpy(s->v[s->n++], k, sizeof k);
  return 0;
}

/* The CPU quota of a node cgroup, in cores; 0 when it has none. */
static double local_cg_cores(const local_impl *li, const char *dir) {
  char f[PATH_MAX * 2 + 32], buf[128];
  long quota = -1, period = LOCAL_PERIOD_US;
  if (li->cg.mode == THR_CGROUP_V1) {
    local_fmt(f, sizeof f, "%s/cpu.cfs_quota_us", dir);
    if (local_read_small(f, buf, sizeof buf) > 0) quota = atol(buf);
    local_fmt(f, sizeof f, "%s/cpu.cfs_period_us", dir);
    if (local_read_small(f, buf, sizeof buf) > 0) period = atol(buf);
  } else {
    local_fmt(f, sizeof f, "%s/cpu.max", dir);
    if (local_read_small(f, buf, sizeof buf) > 0 && isdigit((unsigned char)buf[0]))
      sscanf(buf, "%ld %ld", &quota, &period);
  }
  return quota > 0 && period > 0 ? (double)quota / (double)period : 0;
}

/* 1 if a process is in the cgroup, 0 if none (or no such cgroup), -1 if
 * it cannot tell. */
static int local_cg_populated(const char *dir) {
  char f[PATH_MAX * 2 + 32], buf[64];
  local_fmt(f, sizeof f, "%s/cgroup.procs", dir);
  int n = local_read_small(f, buf, sizeof buf);
  if (n < 0) return errno == ENOENT ? 0 : -1;
  return n > 0;
}

/* Judges node `id` of run `key` (g: its registry entry when reg_rc is 0):
 * counts its quota if it stays, removes its cgroups if it is stale and
 * empty.  Stale: its run directory is gone, the run has no record of it or
 * its record says terminated or failed, or (no entry at all: a build from
 * before the registry) it has not changed for LOCAL_UNREG_GRACE_S. */
static void local_collect_node(const local_impl *li, const char *key, const char *id,
                               const local_reg *g, int reg_rc, local_usage *u) {
  enum { NPATH = 2 * LOCAL_MAX_CG + LOCAL_REG_BASES };
  char cpu_dir[PATH_MAX * 2], why[PATH_MAX + 96];
  local_fmt(cpu_dir, sizeof cpu_dir, "%s/%s/%s", li->cg.base[0], key, id);
  double cores = local_cg_cores(li, cpu_dir);
  char (*path)[PATH_MAX * 2] = malloc(NPATH * sizeof *path);
  local_rec *r = malloc(sizeof *r);
  int stale = 0, rec_ok = 0, run_gone = 0, n = 0;
  if (!path || !r) goto keep;
  if (reg_rc == 0) {
    int rc;
    if ((run_gone = local_run_gone(g->run_dir))) {
      stale = 1;
      local_fmt(why, sizeof why, "its run directory %s is gone", g->run_dir);
    } else if ((rc = local_rec_load(g->run_dir, id, r)) == PM_ENOENT) {
      stale = 1;
      local_fmt(why, sizeof why, "run %s has no record of it", g->run_dir);
    } else if (rc == 0 && (r->state == NODE_TERMINATED || r->state == NODE_FAILED)) {
      stale = rec_ok = 1;
      local_fmt(why, sizeof why, "its record in %s says %s", g->run_dir,
                provider_state_name(r->state));
    }
  } else {
    /* Unregistered: a build that did not register may be creating it right
     * now and has not yet put a process in it. */
    struct stat st;
    for (int i = 0; i < li->cg.nh && !stale; i++) {
      char d[PATH_MAX * 2];
      local_fmt(d, sizeof d, "%s/%s/%s", li->cg.base[i], key, id);
      double age = stat(d, &st) == 0 ? clock_real_s() - (double)st.st_mtime : -1;
      if (age >= LOCAL_UNREG_GRACE_S) {
        stale = 1;
        local_fmt(why, sizeof why, "run key unknown to %s, unchanged for %.0f s",
                  LOCAL_REG_DIR, age);
      } else if (age >= 0) {
        break;
      }
    }
  }
  if (!stale) goto keep;
  /* Everywhere the node can have a cgroup: this process's bases, those the
   * registry names, those its record names (if they are really its). */
  char tail[192];
  local_fmt(tail, sizeof tail, "/%s/%s", key, id);
  for (int i = 0; i < li->cg.nh + (reg_rc ? 0 : g->nbase) + (rec_ok ? r->ncg : 0); i++) {
    char p[PATH_MAX * 2];
    if (i < li->cg.nh) local_fmt(p, sizeof p, "%s%s", li->cg.base[i], tail);
    else if (i < li->cg.nh + (reg_rc ? 0 : g->nbase))
      local_fmt(p, sizeof p, "%s%s", g->base[i - li->cg.nh], tail);
    else {
      local_fmt(p, sizeof p, "%s", r->cg[i - li->cg.nh - (reg_rc ? 0 : g->nbase)]);
      size_t lp = strlen(p), lt = strlen(tail);
      if (lp < lt || strcmp(p + lp - lt, tail)) continue;
    }
    int dup = 0;
    for (int k = 0; k < n; k++)
      if (!strcmp(path[k], p)) dup = 1;
    if (!dup && n < NPATH) memcpy(path[n++], p, sizeof p);
  }
  for (int i = 0; i < n; i++) {
    if (local_cg_populated(path[i]) == 0) continue;
    /* Held: it stays, and counts, and the refusal will say whose it is. */
    log_warn("node %s of run %s is stale (%s) but processes still run in %s", id, key,
             why, path[i]);
    size_t used = strlen(u->held_why);
    if (used + 1 < sizeof u->held_why && u->held < 2)
      local_fmt(u->held_why + used, sizeof u->held_why - used,
                "%snode %s of run %s (%s) still runs processes on %.2f cores: %s%s%s",
                u->held ? "; " : "", id, key, why, cores,
                rec_ok ? "`paramount down " : "end them (pids in ",
                rec_ok ? g->run_dir : path[i], rec_ok ? "` ends them" : "/cgroup.procs)");
    u->held++;
    goto keep;
  }
  /* The run directory may have come back (same path, a new run) since it
   * was found gone; that run would be the one to remove them. */
  if (run_gone && !local_run_gone(g->run_dir)) goto keep;
  int removed = 0, failed = 0;
  for (int i = 0; i < n; i++) {
    if (rmdir(path[i]) == 0) removed++;
    else if (errno != ENOENT) {
      log_warn("node %s of run %s is stale (%s) but %s stays: %s", id, key, why, path[i],
               strerror(errno));
      failed = 1;
    }
    /* The run's own level goes with its last node, unless the run is still
     * there: it may be creating a node under it right now. */
    if (run_gone || reg_rc) {
      char *slash = strrchr(path[i], '/');
      if (slash) *slash = '\0';
      rmdir(path[i]);
    }
  }
  if (removed)
    log_info("collected node %s of run %s: %s (%d cgroup%s removed)", id, key, why, removed,
             removed == 1 ? "" : "s");
  if (failed && access(cpu_dir, F_OK) == 0) u->cores += cores;
  free(path);
  free(r);
  return;
keep:
  u->cores += cores;
  free(path);
  free(r);
}

static int local_is_dir(const char *parent, const struct dirent *de) {
  if (de->d_type != DT_UNKNOWN) return de->d_type == DT_DIR;
  char p[PATH_MAX * 2];
  struct stat st;
  local_fmt(p, sizeof p, "%s/%s", parent, de->d_name);
  return lstat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Judges every node cgroup of run `key` under `base` not judged yet. */
static void local_collect_key(const local_impl *li, const char *base, const char *key,
                              const local_reg *g, int reg_rc, local_seen *seen,
                              local_usage *u) {
  char kd[PATH_MAX * 2];
  local_fmt(kd, sizeof kd, "%s/%s", base, key);
  DIR *d = opendir(kd);
  struct dirent *de;
  while (d && (de = readdir(d)))
    if (local_id_valid(de->d_name) && local_is_dir(kd, de) &&
        !local_seen_check(seen, key, de->d_name))
      local_collect_node(li, key, de->d_name, g, reg_rc, u);
  if (d) closedir(d);
}

/* Host cores already promised to nodes: every node cgroup on the host
 * (all runs) once the stale ones are collected, plus this run's
 * duty-cycled nodes.  Fills *u; 0 or PM_ENOMEM. */
static int local_cores_in_use(const local_impl *li, local_usage *u) {
  memset(u, 0, sizeof *u);
  if (li->cg.mode != THR_DUTYCYCLE) {
    local_reg *g = malloc(sizeof *g);
    if (!g) return PM_ENOMEM;
    local_seen seen = {NULL, 0, 0};
    struct dirent *de;
    for (int i = 0; i < li->cg.nh; i++) {
      DIR *runs = opendir(li->cg.base[i]);
      while (runs && (de = readdir(runs))) {
        if (!local_key_valid(de->d_name) || !local_is_dir(li->cg.base[i], de)) continue;
        int reg_rc = local_reg_load(de->d_name, g);
        local_collect_key(li, li->cg.base[i], de->d_name, g, reg_rc, &seen, u);
        if (reg_rc == 0 && local_run_gone(g->run_dir)) local_reg_prune(de->d_name, 1);
      }
      if (runs) closedir(runs);
    }
    /* A run that is gone can have node cgroups under bases this process
     * does not use (below another process's memory cgroup). */
    DIR *reg = opendir(LOCAL_REG_DIR);
    while (reg && (de = readdir(reg))) {
      if (!local_key_valid(de->d_name) || local_reg_load(de->d_name, g) != 0 ||
          !local_run_gone(g->run_dir))
        continue;
      for (int i = 0; i < g->nbase; i++)
        local_collect_key(li, g->base[i], de->d_name, g, 0, &seen, u);
      local_reg_prune(de->d_name, 1);
    }
    if (reg) closedir(reg);
    free(seen.v);
    free(g);
  }
  char nd_path[PATH_MAX];
  local_path(nd_path, sizeof nd_path, li->run_dir, NULL, NULL);
  DIR *d = opendir(nd_path);
  struct dirent *de;
  while (d && (de = readdir(d))) {
    local_rec r;
    if (!local_id_valid(de->d_name) || local_rec_load(li->run_dir, de->d_name, &r)) continue;
    if (r.throttle == THR_DUTYCYCLE && r.state != NODE_TERMINATED && r.state != NODE_FAILED)
      u->cores += r.cpu_fraction;
  }
  if (d) closedir(d);
  return 0;
}

/* ---- finding and signalling a node's processes ----------------------- */

typedef struct {
  long *pids;
  size_t n, cap;
} local_pidset;

static void local_pidset_add(local_pidset *s, long pid) {
  if (pid <= 0 || pid == (long)getpid()) return;
  for (size_t i = 0; i < s->n; i++)
    if (s->pids[i] == pid) return;
  if (s->n == s->cap) return; /* bounded; the next pass finds the rest */
  s->pids[s->n++] = pid;
}

/* Does /proc/pid/environ hold exactly PARAMOUNT_RUN_DIR=run and
 * PARAMOUNT_NODE=id?  node-exec sets both, and every process a node runs
 * inherits them, even one that escaped its process group (orted
 * --daemonize calls setsid). */
static int local_environ_matches(long pid, const char *want_run,
                                 const char *want_node, char *buf, size_t cap) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%ld/environ", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  size_t n = 0;
  for (;;) {
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    if (r <= 0) break;
    n += (size_t)r;
    if (n == cap - 1) break;
  }
  close(fd);
  buf[n] = '\0';
  int run_ok = 0, node_ok = 0;
  for (size_t i = 0; i < n;) {
    const char *e = buf + i;
    size_t len = strnlen(e, n - i);
    if (!strcmp(e, want_run)) run_ok = 1;
    if (!strcmp(e, want_node)) node_ok = 1;
    i += len + 1;
  }
  return run_ok && node_ok;
}

/* Adds to s the pids of every process carrying the node's environment
 * marker.  buf is scratch space (no allocation: the duty-cycle supervisor
 * calls this after fork). */
static void local_scan_environ(const char *run_dir, const char *id,
                               local_pidset *s, char *buf, size_t cap) {
  char want_run[PATH_MAX + 32], want_node[PROVIDER_ID_MAX + 32];
  snprintf(want_run, sizeof want_run, "PARAMOUNT_RUN_DIR=%s", run_dir);
  snprintf(want_node, sizeof want_node, "PARAMOUNT_NODE=%s", id);
  DIR *d = opendir("/proc");
  if (!d) return;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (!isdigit((unsigned char)de->d_name[0])) continue;
    long pid = atol(de->d_name);
    if (pid == (long)getpid()) continue;
    if (local_environ_matches(pid, want_run, want_node, buf, cap))
      local_pidset_add(s, pid);
  }
  closedir(d);
}

static void local_scan_cgroups(const local_rec *r, local_pidset *s) {
  for (int i = 0; i < r->ncg; i++) {
    char f[PATH_MAX + 32];
    snprintf(f, sizeof f, "%s/cgroup.procs", r->cg[i]);
    FILE *fp = fopen(f, "re");
    if (!fp) continue;
    long pid;
    while (fscanf(fp, "%ld", &pid) == 1) local_pidset_add(s, pid);
    fclose(fp);
  }
}

/* The duty-cycle supervisor's whole life: runs the node's processes for
 * duty x period, stops them for the rest, until the node's record is gone
 * or says terminated.  Runs in a forked child: no allocation but opendir. */
static void local_supervise(const char *run_dir, const char *id, double duty) {
  static char buf[LOCAL_ENVIRON_MAX];
  static long pids[4096];
  char rec_path[PATH_MAX];
  local_path(rec_path, sizeof rec_path, run_dir, id, "node.json");
  double on_s = duty * LOCAL_PERIOD_US / 1e6, off_s = LOCAL_PERIOD_US / 1e6 - on_s;
  for (unsigned tick = 0;; tick++) {
    local_pidset s = {pids, 0, sizeof pids / sizeof pids[0]};
    if (tick % 10 == 0) {
      char st[LOCAL_REC_MAX > 8192 ? 8192 : LOCAL_REC_MAX];
      if (local_read_small(rec_path, st, sizeof st) < 0 || strstr(st, "\"terminated\"")) {
        local_scan_environ(run_dir, id, &s, buf, sizeof buf);
        for (size_t i = 0; i < s.n; i++) kill((pid_t)s.pids[i], SIGCONT);
        _exit(0);
      }
    }
    if (duty >= 1) {
      local_sleep_s(LOCAL_PERIOD_US / 1e6);
      continue;
    }
    local_scan_environ(run_dir, id, &s, buf, sizeof buf);
    for (size_t i = 0; i < s.n; i++) kill((pid_t)s.pids[i], SIGCONT);
    local_sleep_s(on_s);
    s.n = 0;
    local_scan_environ(run_dir, id, &s, buf, sizeof buf);
    for (size_t i = 0; i < s.n; i++) kill((pid_t)s.pids[i], SIGSTOP);
    local_sleep_s(off_s);
  }
}

/* Starts the supervisor as a daemon (double fork, own session), so it
 * outlives the process that started the node exactly as a cloud instance
 * outlives the controller; *pid receives it. */
static int local_supervisor_spawn(const char *run_dir, const local_rec *r, long *pid) {
  int pfd[2];
  if (pipe2(pfd, O_CLOEXEC) != 0) return PM_ESYS;
  double duty = r->cpu_fraction / (double)r->threads;
  if (duty > 1) duty = 1;
  fflush(NULL);
  pid_t c = fork();
  if (c < 0) {
    close(pfd[0]);
    close(pfd[1]);
    return PM_ESYS;
  }
  if (c == 0) {
    setsid();
    pid_t g = fork();
    if (g == 0) {
      int devnull = open("/dev/null", O_RDWR);
      if (devnull >= 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(devnull, 2);
      }
      for (int fd = 3; fd < 1024; fd++)
        if (fd != pfd[1]) close(fd);
      if (chdir("/") != 0) _exit(1); /* hold no directory busy */
      close(pfd[1]);
      char name[16];
      local_fmt(name, sizeof name, "pm-duty-%s", r->id); /* what ps shows */
      prctl(PR_SET_NAME, name, 0, 0, 0);
      local_supervise(run_dir, r->id, duty);
      _exit(0);
    }
    long gp = (long)g;
    ssize_t w = write(pfd[1], &gp, sizeof gp);
    _exit(g > 0 && w == (ssize_t)sizeof gp ? 0 : 1);
  }
  close(pfd[1]);
  long gp = -1;
  ssize_t n;
  while ((n = read(pfd[0], &gp, sizeof gp)) < 0 && errno == EINTR) {
  }
  close(pfd[0]);
  int st;
  waitpid(c, &st, 0);
  if (n != (ssize_t)sizeof gp || gp <= 0) return PM_ECHILD;
  *pid = gp;
  return 0;
}

/* Kills everything the node runs and removes its cgroups.  Safe to repeat;
 * *killed and *removed count what this call did. */
static int local_node_teardown(const char *run_dir, const local_rec *r,
                               int *killed, int *removed, char *err, size_t cap) {
  *killed = *removed = 0;
  if (r->sup_pid > 0 && r->sup_start &&
      local_proc_start(r->sup_pid) == r->sup_start) {
    kill((pid_t)r->sup_pid, SIGKILL);
    (*killed)++;
    for (int i = 0; i < 500 && local_proc_start(r->sup_pid) == r->sup_start; i++)
      local_sleep_s(0.01);
  }
  char *buf = malloc(LOCAL_ENVIRON_MAX);
  long *pids = malloc(4096 * sizeof *pids);
  if (!buf || !pids) {
    free(buf);
    free(pids);
    return local_err(err, cap, PM_ENOMEM, "out of memory");
  }
  uint64_t t0 = clock_mono_ns();
  int rc = 0;
  long seen[64];
  size_t nseen = 0;
  for (;;) {
    local_pidset s = {pids, 0, 4096};
    local_scan_cgroups(r, &s);
    local_scan_environ(run_dir, r->id, &s, buf, LOCAL_ENVIRON_MAX);
    if (s.n == 0) break;
    for (size_t i = 0; i < s.n; i++) {
      /* SIGKILL ends stopped processes too: no SIGCONT needed. */
      if (kill((pid_t)s.pids[i], SIGKILL) == 0) {
        int dup = 0;
        for (size_t k = 0; k < nseen; k++)
          if (seen[k] == s.pids[i]) dup = 1;
        if (!dup) {
          if (nseen < 64) seen[nseen++] = s.pids[i];
          (*killed)++;
        }
      }
    }
    if ((clock_mono_ns() - t0) / 1e9 > LOCAL_KILL_TIMEOUT_S) {
      rc = local_err(err, cap, PM_ETIMEDOUT, "node %s: %zu processes survive SIGKILL",
                     r->id, s.n);
      break;
    }
    local_sleep_s(0.01);
  }
  free(buf);
  free(pids);
  if (rc == 0) local_tmpdir_remove(run_dir, r->id);
  for (int i = r->ncg - 1; i >= 0 && rc == 0; i--) {
    /* A killed task leaves its cgroup a moment after it dies. */
    int gone = 0;
    for (int k = 0; k < 500; k++) {
      if (rmdir(r->cg[i]) == 0) {
        (*removed)++;
        gone = 1;
        break;
      }
      if (errno == ENOENT) {
        gone = 1;
        break;
      }
      if (errno != EBUSY) break;
      local_sleep_s(0.01);
    }
    if (!gone)
      rc = local_err(err, cap, PM_ESYS, "node %s: cannot remove cgroup %s: %s", r->id,
                     r->cg[i], strerror(errno));
    /* The run's level goes when its last node does; EBUSY just means
     * other nodes remain. */
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", r->cg[i]);
    char *slash = strrchr(parent, '/');
    if (slash) *slash = '\0';
    rmdir(parent);
  }
  /* The run leaves the registry with its last node cgroup (the caller
   * holds the run's lock, so no node of the run is being created). */
  if (rc == 0 && r->ncg > 0) {
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", r->cg[0]);
    char *slash = strrchr(parent, '/');
    if (slash) *slash = '\0';
    const char *key = strrchr(parent, '/');
    if (key && local_key_valid(key + 1)) local_reg_prune(key + 1, 0);
  }
  return rc;
}

/* ---- the ops --------------------------------------------------------- */

static void local_rec_to_node(const local_rec *r, double now, provider_node *n) {
  memset(n, 0, sizeof *n);
  snprintf(n->id, sizeof n->id, "%s", r->id);
  snprintf(n->type, sizeof n->type, "%s", r->type);
  n->state = local_rec_observed(r, now);
  n->requested_s = r->requested_s;
  n->booted_s = r->booted_s > 0 ? r->booted_s
                                : (n->state == NODE_BOOTED ? r->boot_until_s : 0);
  n->staged_s = r->staged_s;
  n->ready_s = r->ready_s;
  n->terminated_s = r->terminated_s;
  n->price_usd_per_hour = r->price_usd_per_hour;
  n->billing_granularity_s = r->billing_granularity_s;
  n->billing_minimum_s = r->billing_minimum_s;
  n->cpu_fraction = r->cpu_fraction;
  n->threads = r->threads;
  n->stage_bytes = r->stage_bytes;
  n->stage_s = r->stage_s;
  snprintf(n->throttle, sizeof n->throttle, "%s", local_throttle_names[r->throttle]);
  n->cpu_used_s = -1;
  for (int i = 0; i < r->ncg; i++) {
    char f[PATH_MAX + 32], buf[64];
    snprintf(f, sizeof f, "%s/cpuacct.usage", r->cg[i]);
    if (local_read_small(f, buf, sizeof buf) > 0) n->cpu_used_s = atof(buf) / 1e9;
    snprintf(f, sizeof f, "%s/cpu.stat", r->cg[i]);
    char st[1024];
    if (r->throttle == THR_CGROUP_V2 && local_read_small(f, st, sizeof st) > 0) {
      char *u = strstr(st, "usage_usec ");
      if (u) n->cpu_used_s = atof(u + 11) / 1e6;
    }
  }
}

typedef struct {
  char ids[1024][PROVIDER_ID_MAX];
  size_t n;
  json_object *req[1024]; /* node_request record per id, owned */
  int terminated[1024];
} local_known;

static int local_known_add(local_known *k, const char *id) {
  for (size_t i = 0; i < k->n; i++)
    if (!strcmp(k->ids[i], id)) return (int)i;
  if (k->n == 1024) return -1;
  snprintf(k->ids[k->n], PROVIDER_ID_MAX, "%s", id);
  k->req[k->n] = NULL;
  k->terminated[k->n] = 0;
  return (int)k->n++;
}

static int local_known_journal_cb(json_object *rec, void *ud) {
  local_known *k = ud;
  const char *ev = local_js(rec, "ev"), *id = local_js(rec, "node");
  if (!ev || !id || !local_id_valid(id)) return 0;
  if (!strcmp(ev, "node_request")) {
    int i = local_known_add(k, id);
    if (i >= 0 && !k->req[i]) k->req[i] = json_object_get(rec);
  } else if (!strcmp(ev, "node_terminated")) {
    int i = local_known_add(k, id);
    if (i >= 0) k->terminated[i] = 1;
  }
  return 0;
}

static int local_id_cmp(const void *a, const void *b) {
  const char *x = a, *y = b;
  size_t lx = strlen(x), ly = strlen(y);
  if (lx != ly) return lx < ly ? -1 : 1; /* n2 before n10 */
  return strcmp(x, y);
}

/* Every node of the run: the journal's node_requests (written before any
 * node exists) and the node directories. */
static int local_known_collect(const char *run_dir, local_known *k, char *err, size_t cap) {
  k->n = 0;
  long bad = 0;
  const char *warn = NULL;
  char jp[PATH_MAX];
  snprintf(jp, sizeof jp, "%s/journal.jsonl", run_dir);
  if (access(jp, F_OK) == 0) {
    int rc = journal_read(run_dir, local_known_journal_cb, k, &bad, &warn);
    if (rc) {
      for (size_t i = 0; i < k->n; i++) json_object_put(k->req[i]);
      return local_err(err, cap, rc, "%s: line %ld: malformed journal record", jp, bad);
    }
  }
  char nd[PATH_MAX];
  local_path(nd, sizeof nd, run_dir, NULL, NULL);
  DIR *d = opendir(nd);
  struct dirent *de;
  while (d && (de = readdir(d)))
    if (local_id_valid(de->d_name)) local_known_add(k, de->d_name);
  if (d) closedir(d);
  /* Sort ids, keeping the parallel arrays aligned. */
  for (size_t i = 1; i < k->n; i++)
    for (size_t j = i; j > 0 && local_id_cmp(k->ids[j - 1], k->ids[j]) > 0; j--) {
      char t[PROVIDER_ID_MAX];
      memcpy(t, k->ids[j], sizeof t);
      memcpy(k->ids[j], k->ids[j - 1], sizeof t);
      memcpy(k->ids[j - 1], t, sizeof t);
      json_object *o = k->req[j];
      k->req[j] = k->req[j - 1];
      k->req[j - 1] = o;
      int x = k->terminated[j];
      k->terminated[j] = k->terminated[j - 1];
      k->terminated[j - 1] = x;
    }
  return 0;
}

static void local_known_free(local_known *k) {
  for (size_t i = 0; i < k->n; i++) json_object_put(k->req[i]);
  k->n = 0;
}

/* The record of a known node: node.json, else rebuilt from its journal
 * node_request (a crash between the journal and the record). */
static int local_known_rec(const char *run_dir, const local_known *k, size_t i,
                           local_rec *r) {
  int rc = local_rec_load(run_dir, k->ids[i], r);
  if (rc == 0) return 0;
  if (!k->req[i]) return rc;
  rc = local_rec_from_json(k->req[i], r);
  if (rc) return rc;
  r->requested_s = local_jd(k->req[i], "t");
  r->state = k->terminated[i] ? NODE_TERMINATED : NODE_FAILED;
  return 0;
}

int provider_local_list(const char *run_dir, provider_node **out, size_t *n,
                        char *err, size_t cap) {
  *out = NULL;
  *n = 0;
  local_known *k = malloc(sizeof *k);
  local_rec *r = malloc(sizeof *r);
  if (!k || !r) {
    free(k);
    free(r);
    return local_err(err, cap, PM_ENOMEM, "out of memory");
  }
  int rc = local_known_collect(run_dir, k, err, cap);
  if (rc) goto done;
  provider_node *nodes = calloc(k->n ? k->n : 1, sizeof *nodes);
  if (!nodes) {
    rc = local_err(err, cap, PM_ENOMEM, "out of memory");
    goto done_known;
  }
  double now = clock_real_s();
  size_t m = 0;
  for (size_t i = 0; i < k->n; i++)
    if (local_known_rec(run_dir, k, i, r) == 0) local_rec_to_node(r, now, &nodes[m++]);
  *out = nodes;
  *n = m;
done_known:
  local_known_free(k);
done:
  free(k);
  free(r);
  return rc;
}

/* Terminates one node under the run lock; what[] describes it. */
static int local_terminate(const char *run_dir, journal *j, const local_known *k,
                           size_t i, char *what, size_t wcap, char *err, size_t cap) {
  local_rec *r = malloc(sizeof *r);
  if (!r) return local_err(err, cap, PM_ENOMEM, "out of memory");
  int fd = local_lock(run_dir);
  int rc = local_known_rec(run_dir, k, i, r);
  if (rc) {
    snprintf(what, wcap, "no usable record (%s); nothing to remove", pm_strerror(rc));
    rc = 0;
    goto done;
  }
  int killed = 0, removed = 0;
  rc = local_node_teardown(run_dir, r, &killed, &removed, err, cap);
  if (rc) goto done;
  int was_terminated = r->state == NODE_TERMINATED;
  if (!was_terminated) {
    r->terminated_s = clock_real_s();
    r->state = NODE_TERMINATED;
    char rp[PATH_MAX];
    local_path(rp, sizeof rp, run_dir, r->id, NULL);
    if (access(rp, F_OK) == 0) local_rec_save(run_dir, r);
  }
  if (!was_terminated || !k->terminated[i]) {
    json_object *x = json_object_new_object();
    json_object_object_add(x, "processes_killed", json_object_new_int(killed));
    json_object_object_add(x, "cgroups_removed", json_object_new_int(removed));
    local_journal_node(j, "node_terminated", r, r->terminated_s, x, 1);
  }
  if (was_terminated && !killed && !removed)
    snprintf(what, wcap, "already terminated");
  else
    snprintf(what, wcap, "terminated (%d process%s killed, %d cgroup%s removed)", killed,
             killed == 1 ? "" : "es", removed, removed == 1 ? "" : "s");
done:
  local_unlock(fd);
  free(r);
  return rc;
}

int provider_local_down(const char *run_dir, provider_down_cb report, void *ud,
                        char *err, size_t cap) {
  local_known *k = malloc(sizeof *k);
  if (!k) return local_err(err, cap, PM_ENOMEM, "out of memory");
  int rc = local_known_collect(run_dir, k, err, cap);
  if (rc) {
    free(k);
    return rc;
  }
  journal *j = NULL;
  if (k->n && (rc = journal_open(run_dir, &j)) != 0) {
    local_known_free(k);
    free(k);
    return local_err(err, cap, rc, "%s: cannot open the journal", run_dir);
  }
  int first_rc = 0;
  for (size_t i = 0; i < k->n; i++) {
    char what[256], e2[512];
    int r2 = local_terminate(run_dir, j, k, i, what, sizeof what, e2, sizeof e2);
    if (r2) {
      local_fmt(what, sizeof what, "FAILED: %s", e2);
      if (!first_rc) {
        first_rc = r2;
        snprintf(err, cap, "%s", e2);
      }
    }
    if (report) report(k->ids[i], what, ud);
  }
  journal_close(j);
  local_known_free(k);
  free(k);
  return first_rc;
}

static int local_op_stop(provider *p, const char *id, int *did) {
  local_impl *li = p->impl;
  if (did) *did = 0;
  local_known *k = malloc(sizeof *k);
  if (!k) return PM_ENOMEM;
  int rc = local_known_collect(li->run_dir, k, p->err, sizeof p->err);
  if (rc) goto done;
  size_t i;
  for (i = 0; i < k->n && strcmp(k->ids[i], id); i++) {
  }
  if (i == k->n) {
    rc = local_err(p->err, sizeof p->err, PM_ENOENT, "no node '%s' in %s", id, li->run_dir);
    goto done_known;
  }
  char what[256];
  rc = local_terminate(li->run_dir, li->j, k, i, what, sizeof what, p->err, sizeof p->err);
  if (!rc && did) *did = strcmp(what, "already terminated") != 0;
done_known:
  local_known_free(k);
done:
  free(k);
  return rc;
}

static int local_op_list(provider *p, provider_node **out, size_t *n) {
  local_impl *li = p->impl;
  return provider_local_list(li->run_dir, out, n, p->err, sizeof p->err);
}

/* Loads a node, writing down a boot the clock says is over. */
static int local_refresh(local_impl *li, const char *id, local_rec *r, char *err,
                         size_t cap) {
  if (!local_id_valid(id))
    return local_err(err, cap, PM_EINVAL, "'%s' is not a node id", id);
  int rc = local_rec_load(li->run_dir, id, r);
  if (rc)
    return local_err(err, cap, rc, "no node '%s' in %s", id, li->run_dir);
  double now = clock_real_s();
  if (local_rec_observed(r, now) != NODE_BOOTED || r->state == NODE_BOOTED) return 0;
  int fd = local_lock(li->run_dir);
  rc = local_rec_load(li->run_dir, id, r);
  if (!rc && r->state == NODE_BOOTING && now >= r->boot_until_s) {
    r->state = NODE_BOOTED;
    r->booted_s = r->boot_until_s;
    rc = local_rec_save(li->run_dir, r);
    if (!rc) local_journal_node(li->j, "node_booted", r, r->booted_s, NULL, 0);
  }
  local_unlock(fd);
  return rc;
}

static int local_op_alive(provider *p, const char *id, provider_node *out) {
  local_impl *li = p->impl;
  local_rec *r = malloc(sizeof *r);
  if (!r) return PM_ENOMEM;
  int rc = local_refresh(li, id, r, p->err, sizeof p->err);
  if (rc) {
    free(r);
    return rc;
  }
  if (out) local_rec_to_node(r, clock_real_s(), out);
  int alive = r->state == NODE_BOOTED || r->state == NODE_READY;
  for (int i = 0; alive && i < r->ncg; i++)
    if (access(r->cg[i], F_OK) != 0) alive = 0; /* removed behind our back */
  if (alive && r->throttle == THR_DUTYCYCLE && r->sup_pid > 0 &&
      local_proc_start(r->sup_pid) != r->sup_start)
    alive = 0;
  free(r);
  return alive;
}

static int local_op_wait_booted(provider *p, const char *id, double timeout_s) {
  local_impl *li = p->impl;
  local_rec *r = malloc(sizeof *r);
  if (!r) return PM_ENOMEM;
  double deadline = clock_real_s() + timeout_s;
  int rc;
  for (;;) {
    rc = local_refresh(li, id, r, p->err, sizeof p->err);
    if (rc) break;
    if (r->state == NODE_BOOTED || r->state == NODE_READY) break;
    if (r->state != NODE_BOOTING) {
      rc = local_err(p->err, sizeof p->err, PM_ESTATE, "node %s is %s", id,
                     provider_state_name(r->state));
      break;
    }
    double now = clock_real_s();
    if (now >= deadline) {
      rc = local_err(p->err, sizeof p->err, PM_ETIMEDOUT,
                     "node %s still booting after %.1f s", id, timeout_s);
      break;
    }
    double wait = r->boot_until_s - now;
    if (wait > deadline - now) wait = deadline - now;
    local_sleep_s(wait < 0.001 ? 0.001 : wait);
  }
  free(r);
  return rc;
}

/* Copies one file or directory tree into dst_dir; adds the bytes moved. */
static int local_copy(const char *src, const char *dst, double *bytes, char *err,
                      size_t cap) {
  struct stat st;
  if (stat(src, &st) != 0)
    return local_err(err, cap, PM_ENOENT, "cannot stage '%s': %s", src, strerror(errno));
  if (S_ISDIR(st.st_mode)) {
    if (mkdir(dst, 0755) != 0 && errno != EEXIST)
      return local_err(err, cap, PM_ESYS, "cannot create %s: %s", dst, strerror(errno));
    DIR *d = opendir(src);
    if (!d) return local_err(err, cap, PM_ESYS, "cannot read %s: %s", src, strerror(errno));
    struct dirent *de;
    int rc = 0;
    while (!rc && (de = readdir(d))) {
      if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
      char s2[PATH_MAX], d2[PATH_MAX];
      if (snprintf(s2, sizeof s2, "%s/%s", src, de->d_name) >= (int)sizeof s2 ||
          snprintf(d2, sizeof d2, "%s/%s", dst, de->d_name) >= (int)sizeof d2) {
        rc = local_err(err, cap, PM_EINVAL, "path too long under %s", src);
        break;
      }
      rc = local_copy(s2, d2, bytes, err, cap);
    }
    closedir(d);
    return rc;
  }
  if (!S_ISREG(st.st_mode))
    return local_err(err, cap, PM_EINVAL, "cannot stage '%s': not a file or directory", src);
  int in = open(src, O_RDONLY | O_CLOEXEC);
  if (in < 0) return local_err(err, cap, PM_ESYS, "cannot open %s: %s", src, strerror(errno));
  int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, st.st_mode & 0777);
  if (out < 0) {
    close(in);
    return local_err(err, cap, PM_ESYS, "cannot create %s: %s", dst, strerror(errno));
  }
  static char buf[1 << 20];
  int rc = 0;
  for (;;) {
    ssize_t n = read(in, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      rc = local_err(err, cap, PM_EIO, "reading %s: %s", src, strerror(errno));
      break;
    }
    if (n == 0) break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(out, buf + off, (size_t)(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        rc = local_err(err, cap, PM_EIO, "writing %s: %s", dst, strerror(errno));
        break;
      }
      off += w;
    }
    if (rc) break;
    *bytes += (double)n;
  }
  /* A staged file must be on the node's "disk", not in our page cache. */
  if (!rc && fsync(out) != 0)
    rc = local_err(err, cap, PM_EIO, "fsync %s: %s", dst, strerror(errno));
  close(in);
  if (close(out) != 0 && !rc) rc = local_err(err, cap, PM_EIO, "closing %s", dst);
  return rc;
}

static int local_op_stage(provider *p, const char *id, const char *const *paths,
                          size_t n) {
  local_impl *li = p->impl;
  int rc = local_op_wait_booted(p, id, 3600);
  if (rc) return rc;
  char work[PATH_MAX];
  if (local_path(work, sizeof work, li->run_dir, id, "work")) return PM_EINVAL;
  double t0 = clock_real_s(), bytes = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    const char *base = strrchr(paths[i], '/');
    base = base && base[1] ? base + 1 : paths[i];
    char dst[PATH_MAX];
    if (snprintf(dst, sizeof dst, "%s/%s", work, base) >= (int)sizeof dst)
      return local_err(p->err, sizeof p->err, PM_EINVAL, "path too long: %s", paths[i]);
    rc = local_copy(paths[i], dst, &bytes, p->err, sizeof p->err);
  }
  if (rc) return rc;
  double t1 = clock_real_s();
  local_rec *r = malloc(sizeof *r);
  if (!r) return PM_ENOMEM;
  int fd = local_lock(li->run_dir);
  rc = local_rec_load(li->run_dir, id, r);
  if (!rc && r->state != NODE_BOOTED && r->state != NODE_READY)
    rc = local_err(p->err, sizeof p->err, PM_ESTATE, "node %s was %s while staging", id,
                   provider_state_name(r->state));
  if (!rc) {
    r->staged_s = t1;
    r->ready_s = t1;
    r->stage_bytes = bytes;
    r->stage_s = t1 - t0;
    r->state = NODE_READY;
    rc = local_rec_save(li->run_dir, r);
    json_object *x = json_object_new_object();
    json_object_object_add(x, "bytes", json_object_new_double(bytes));
    json_object_object_add(x, "files", json_object_new_int((int)n));
    json_object_object_add(x, "stage_s", json_object_new_double(t1 - t0));
    local_journal_node(li->j, "node_staged", r, t1, x, 0);
    local_journal_node(li->j, "node_ready", r, t1, NULL, 0);
  }
  local_unlock(fd);
  free(r);
  return rc;
}

static int local_op_exec_argv(provider *p, const char *id, char *const *cmd,
                              char ***out) {
  local_impl *li = p->impl;
  *out = NULL;
  if (!local_id_valid(id))
    return local_err(p->err, sizeof p->err, PM_EINVAL, "'%s' is not a node id", id);
  size_t nc = 0;
  while (cmd && cmd[nc]) nc++;
  if (!nc) return local_err(p->err, sizeof p->err, PM_EINVAL, "empty command");
  char **argv = calloc(nc + 7, sizeof *argv);
  if (!argv) return PM_ENOMEM;
  const char *head[] = {li->bin, "node-exec", "--run", li->run_dir, id, "--"};
  size_t k = 0;
  for (size_t i = 0; i < 6; i++) argv[k++] = strdup(head[i]);
  for (size_t i = 0; i < nc; i++) argv[k++] = strdup(cmd[i]);
  for (size_t i = 0; i < k; i++)
    if (!argv[i]) {
      provider_argv_free(argv);
      return PM_ENOMEM;
    }
  *out = argv;
  return 0;
}

static int local_op_mpi_agent(provider *p, char *buf, size_t cap) {
  local_impl *li = p->impl;
  /* Open MPI splits plm_rsh_agent on whitespace. */
  if (strpbrk(li->bin, " \t\n") || strpbrk(li->run_dir, " \t\n"))
    return local_err(p->err, sizeof p->err, PM_EINVAL,
                     "Open MPI splits its rsh agent on spaces: '%s' or '%s' holds one",
                     li->bin, li->run_dir);
  if (snprintf(buf, cap, "%s node-exec --run %s", li->bin, li->run_dir) >= (int)cap)
    return local_err(p->err, sizeof p->err, PM_EINVAL, "agent command too long");
  return 0;
}

static int local_op_workdir(provider *p, const char *id, char *buf, size_t cap) {
  local_impl *li = p->impl;
  if (!local_id_valid(id))
    return local_err(p->err, sizeof p->err, PM_EINVAL, "'%s' is not a node id", id);
  if (local_path(buf, cap, li->run_dir, id, "work"))
    return local_err(p->err, sizeof p->err, PM_EINVAL, "node %s: directory path too long", id);
  return 0;
}

/* Allocates the next free id by creating its directory: mkdir is atomic,
 * so two starters in one run never share an id. */
static int local_id_alloc(const char *run_dir, char *id, size_t cap) {
  for (unsigned k = 1; k < 100000; k++) {
    char p[PATH_MAX];
    snprintf(id, cap, "n%u", k);
    if (local_path(p, sizeof p, run_dir, id, NULL)) return PM_EINVAL;
    if (mkdir(p, 0755) == 0) return 0;
    if (errno != EEXIST) return PM_ESYS;
  }
  return PM_ENOSPC;
}

static int local_start_one(local_impl *li, const catalog_type *t, local_rec *r,
                           char *err, size_t cap) {
  memset(r, 0, sizeof *r);
  int rc = local_id_alloc(li->run_dir, r->id, sizeof r->id);
  if (rc) return local_err(err, cap, rc, "cannot allocate a node directory in %s/nodes: %s",
                           li->run_dir, strerror(errno));
  snprintf(r->type, sizeof r->type, "%s", t->name);
  r->state = NODE_REQUESTED;
  r->requested_s = clock_real_s();
  r->boot_until_s = r->requested_s + t->boot_delay_s;
  r->price_usd_per_hour = t->price_usd_per_hour;
  r->billing_granularity_s = t->billing_granularity_s;
  r->billing_minimum_s = t->billing_minimum_s;
  r->cpu_fraction = t->cpu_fraction;
  r->memory_limit_mib = t->memory_limit_mib;
  r->vcpus = t->vcpus;
  r->threads = local_threads_for(t->cpu_fraction);
  r->throttle = li->cg.mode;
  /* Plan the cgroup paths now so the journal names them before they
   * exist: whoever cleans up after a crash needs nothing else. */
  for (int i = 0; i < li->cg.nh; i++)
    snprintf(r->cg[i], PATH_MAX, "%s/%s/%s", li->cg.base[i], li->run_key, r->id);
  r->ncg = li->cg.nh;
  json_object *req = local_rec_to_json(r);
  rc = local_journal_node(li->j, "node_request", r, r->requested_s, req, 1);
  if (rc) return local_err(err, cap, rc, "cannot journal node %s", r->id);
  char work[PATH_MAX];
  local_path(work, sizeof work, li->run_dir, r->id, "work");
  if (mkdir(work, 0755) != 0 && errno != EEXIST)
    return local_err(err, cap, PM_ESYS, "cannot create %s: %s", work, strerror(errno));
  char tmp[128];
  local_tmpdir(li->run_dir, r->id, tmp, sizeof tmp);
  if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
    return local_err(err, cap, PM_ESYS, "cannot create %s: %s", tmp, strerror(errno));
  r->ncg = 0;
  rc = local_rec_save(li->run_dir, r);
  if (rc) local_err(err, cap, rc, "cannot write the record of node %s", r->id);
  /* Registered before the cgroups exist: a collector never sees them
   * without a run to ask about them. */
  if (!rc && li->cg.nh) rc = local_reg_add(li, err, cap);
  if (!rc) rc = local_cg_create(&li->cg, li->run_key, r, err, cap);
  if (!rc && r->throttle == THR_DUTYCYCLE) {
    r->state = NODE_BOOTING; /* the supervisor exits on a missing or dead record */
    rc = local_rec_save(li->run_dir, r);
    if (!rc) rc = local_supervisor_spawn(li->run_dir, r, &r->sup_pid);
    if (!rc) r->sup_start = local_proc_start(r->sup_pid);
    if (rc) local_err(err, cap, rc, "cannot start the duty-cycle supervisor of %s", r->id);
  }
  if (rc) {
    r->state = NODE_FAILED;
    local_rec_save(li->run_dir, r);
    return rc;
  }
  r->state = NODE_BOOTING;
  rc = local_rec_save(li->run_dir, r);
  if (rc) local_err(err, cap, rc, "cannot write the record of node %s", r->id);
  return rc;
}

static int local_op_start(provider *p, const char *type, unsigned count,
                          provider_node *out) {
  local_impl *li = p->impl;
  const catalog_type *t = catalog_find(li->cat, type);
  if (!t)
    return local_err(p->err, sizeof p->err, PM_ENOENT, "type '%s' is not in catalog %s",
                     type, li->cat->path);
  if (count == 0) return 0;
  local_rec *r = malloc(sizeof *r);
  if (!r) return PM_ENOMEM;
  int fd = local_lock(li->run_dir);
  if (fd < 0) {
    free(r);
    return local_err(p->err, sizeof p->err, PM_ESYS, "cannot lock %s/nodes: %s",
                     li->run_dir, strerror(errno));
  }
  local_usage u;
  int rc = local_cores_in_use(li, &u);
  if (rc) {
    local_err(p->err, sizeof p->err, rc, "out of memory");
    goto done;
  }
  double used = u.cores, want = t->cpu_fraction * count;
  unsigned cores = local_host_cores();
  if (used + want > cores + 1e-9) {
    if (!li->force) {
      char more[48] = "";
      if (u.held > 2) local_fmt(more, sizeof more, " (and %u more)", u.held - 2);
      rc = local_err(p->err, sizeof p->err, PM_ENOSPC,
                     "refusing to start %u x %s (%.2f cores each): nodes already hold "
                     "%.2f of the host's %u cores, and %.2f > %u would make the emulated "
                     "speeds wrong (set force: true or --force to oversubscribe; "
                     "`paramount down RUN` removes runs left running)%s%s%s",
                     count, type, t->cpu_fraction, used, cores, used + want, cores,
                     u.held ? "; " : "", u.held_why, more);
      goto done;
    }
    log_warn("%u x %s oversubscribes the host: %.2f of %u cores; emulated "
             "speeds will be slower than the catalog says",
             count, type, used + want, cores);
  }
  char ids[256][PROVIDER_ID_MAX];
  unsigned made = 0;
  for (unsigned i = 0; i < count; i++) {
    rc = local_start_one(li, t, r, p->err, sizeof p->err);
    if (made < 256) snprintf(ids[made], PROVIDER_ID_MAX, "%s", r->id);
    made++;
    if (rc) break;
    if (out) local_rec_to_node(r, clock_real_s(), &out[i]);
  }
  local_unlock(fd);
  fd = -1;
  if (rc) {
    /* All or nothing: remove what this call created. */
    char saved[sizeof p->err];
    memcpy(saved, p->err, sizeof saved);
    for (unsigned i = 0; i < made && i < 256; i++) local_op_stop(p, ids[i], NULL);
    memcpy(p->err, saved, sizeof saved);
  }
done:
  local_unlock(fd);
  free(r);
  return rc;
}

static void local_op_close(provider *p) {
  local_impl *li = p->impl;
  journal_close(li->j);
  free(li);
  free(p);
}

static const provider_ops local_ops = {
    .name = "local",
    .start = local_op_start,
    .stop = local_op_stop,
    .list = local_op_list,
    .alive = local_op_alive,
    .wait_booted = local_op_wait_booted,
    .stage = local_op_stage,
    .exec_argv = local_op_exec_argv,
    .mpi_agent = local_op_mpi_agent,
    .workdir = local_op_workdir,
    .close = local_op_close,
};

int provider_local_open(const provider_opts *o, provider **out, char *err, size_t cap) {
  *out = NULL;
  if (!o || !o->run_dir || !o->cat)
    return local_err(err, cap, PM_EINVAL, "local provider needs a run directory and a catalog");
  provider *p = calloc(1, sizeof *p);
  local_impl *li = calloc(1, sizeof *li);
  int rc = PM_ENOMEM;
  if (!p || !li) goto fail;
  /* One spelling of the run directory: it is matched byte for byte in
   * the environment of the node's processes. */
  if (!realpath(o->run_dir, li->run_dir)) {
    rc = local_err(err, cap, PM_ENOENT, "run directory %s: %s", o->run_dir, strerror(errno));
    goto fail;
  }
  local_run_key(li->run_dir, li->run_key, sizeof li->run_key);
  li->cat = o->cat;
  li->force = o->force;
  if (o->paramount_bin) snprintf(li->bin, sizeof li->bin, "%s", o->paramount_bin);
  else {
    char dir[PATH_MAX];
    if (util_self_dir(dir, sizeof dir) != 0) snprintf(dir, sizeof dir, ".");
    local_fmt(li->bin, sizeof li->bin, "%s/paramount", dir);
  }
  rc = local_cg_env_init(&li->cg, err, cap);
  if (rc) goto fail;
  if (li->cg.mode == THR_DUTYCYCLE) {
    static int said; /* once per process, as promised */
    if (!said++)
      log_warn("cgroups unavailable (%s); throttling by SIGSTOP/SIGCONT duty "
               "cycle, memory limits not enforced", li->cg.why);
  }
  rc = journal_open(li->run_dir, &li->j);
  if (rc) {
    local_err(err, cap, rc, "%s: cannot open the journal", li->run_dir);
    goto fail;
  }
  p->ops = &local_ops;
  p->impl = li;
  *out = p;
  return 0;
fail:
  free(li);
  free(p);
  if (rc == PM_ENOMEM) local_err(err, cap, rc, "out of memory");
  return rc;
}

/* ---- node-exec ------------------------------------------------------- */

int provider_local_exec(const char *run_dir, const char *id, char *const *cmd,
                        char *err, size_t cap) {
  if (!local_id_valid(id))
    return local_err(err, cap, PM_EINVAL, "'%s' is not a node id", id);
  if (!cmd || !cmd[0]) return local_err(err, cap, PM_EINVAL, "no command to run");
  local_rec *r = malloc(sizeof *r);
  if (!r) return local_err(err, cap, PM_ENOMEM, "out of memory");
  int rc = local_rec_load(run_dir, id, r);
  if (rc) {
    local_err(err, cap, rc == PM_ENOENT ? PM_ENOENT : rc, "no node '%s' in %s%s", id,
              run_dir, rc == PM_ENOENT ? "" : " (unreadable record)");
    goto fail;
  }
  double now = clock_real_s();
  provider_node_state st = local_rec_observed(r, now);
  if (st == NODE_BOOTING) {
    rc = local_err(err, cap, PM_ESTATE, "node %s is still booting (%.1f s left)", id,
                   r->boot_until_s - now);
    goto fail;
  }
  if (st != NODE_BOOTED && st != NODE_READY) {
    rc = local_err(err, cap, PM_ESTATE, "node %s is %s", id, provider_state_name(st));
    goto fail;
  }
  char pid[32];
  snprintf(pid, sizeof pid, "%ld", (long)getpid());
  for (int i = 0; i < r->ncg; i++) {
    char f[PATH_MAX + 32];
    snprintf(f, sizeof f, "%s/cgroup.procs", r->cg[i]);
    if (local_write_str(f, pid) != 0) {
      rc = local_err(err, cap, PM_ESYS, "cannot enter node %s's cgroup %s: %s", id, r->cg[i],
                     strerror(errno));
      goto fail;
    }
  }
  char work[PATH_MAX], num[32];
  local_path(work, sizeof work, run_dir, id, "work");
  if (chdir(work) != 0) {
    rc = local_err(err, cap, PM_ESYS, "cannot enter %s: %s", work, strerror(errno));
    goto fail;
  }
  char tmp[128];
  local_tmpdir(run_dir, id, tmp, sizeof tmp);
  if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
    rc = local_err(err, cap, PM_ESYS, "cannot create %s: %s", tmp, strerror(errno));
    goto fail;
  }
  setenv("TMPDIR", tmp, 1);
  setenv("PARAMOUNT_RUN_DIR", run_dir, 1);
  setenv("PARAMOUNT_NODE", id, 1);
  setenv("PARAMOUNT_NODE_TYPE", r->type, 1);
  snprintf(num, sizeof num, "%.3f", r->cpu_fraction);
  setenv("PARAMOUNT_NODE_CPU_FRACTION", num, 1);
  snprintf(num, sizeof num, "%u", r->threads);
  /* OpenMP (and oneDNN built on it), MKL and OpenBLAS pools. */
  setenv("PARAMOUNT_NODE_THREADS", num, 1);
  setenv("OMP_NUM_THREADS", num, 1);
  setenv("MKL_NUM_THREADS", num, 1);
  setenv("OPENBLAS_NUM_THREADS", num, 1);
  free(r);
  execvp(cmd[0], cmd);
  return local_err(err, cap, PM_ESYS, "cannot run '%s' on node %s: %s", cmd[0], id,
                   strerror(errno));
fail:
  free(r);
  return rc;
}
