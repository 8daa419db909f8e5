/* run.c - `paramount run`: the loop that closes Paramount's circle.
 *
 * One thread, one state machine: RUNNING (job trains, policy decides every
 * interval) -> SETUP (new nodes boot and stage while the job still trains)
 * -> STOPPING (agreed stop requested, waiting for the checkpoint) ->
 * RUNNING on the new node set.  Each launch has its own intake (port), and
 * all launches' rank data stay in memory for the policy and the report.
 * Every exit path terminates every node the run ever started.
 */
#include "controller/run.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/journal.h"
#include "common/log.h"
#include "common/util.h"
#include "controller/intake.h"
#include "controller/launch.h"
#include "paramount.h"
#include "policy/policy.h"
#include "provider/provider.h"
#include "report/report.h"

#define RUN_NODES_MAX 512
#define RUN_LAUNCHES_MAX 64
#define RUN_DECISIONS_MAX 8192
#define RUN_POLL_MS 200
#define RUN_STATUS_TTY_S 0.5
#define RUN_STATUS_LOG_S 5.0
#define RUN_KILL_GRACE_S 3.0
#define RUN_LOSSES_MAX 32
#define RUN_HEALTH_S 1.0          /* between checks that members are alive */
#define RUN_RETRIES_MAX 2         /* job crashes on live nodes resumed, then fail */
#define RUN_WAIT_REDECIDE_MIN_S 0.25 /* after a "wait", ask again no sooner */

typedef enum { RUN_RUNNING = 0, RUN_SETUP, RUN_STOPPING, RUN_DONE } run_state;

static const char *const run_state_names[] = {"running", "setup", "stopping", "done"};

typedef struct {
  provider_node pn; /* last refreshed record */
  int member;       /* in the current launch's host set */
  int incoming;     /* started for the pending switch, not yet a member */
  int leaving;      /* leaves the cluster at the pending switch */
  int stopped;      /* terminated by us */
} run_node;

typedef struct {
  intake *in;
  pid_t pid;
  int pidfd;
  int exited, status; /* exit status, 128+sig when killed */
  size_t nhosts;
  size_t host[RUN_CONFIG_NODES_MAX]; /* indices into run_ctx.nodes */
  double spawn_s, exit_s, stop_req_s;
  char resumed_from[WIRE_PATH_MAX + 1];
  char log[PATH_MAX + 32];
} run_launch;

/* One cluster change, from the decision to the first PI on the new set. */
typedef struct {
  int from_launch, to_launch;
  double decide_s, ready_s, stop_req_s, ckpt_s, exit_s, init_begin_s, first_pi_s;
  char from[160], to[160];
  char action[12];
  int done;
} run_switch;

typedef struct {
  double t_s;
  policy_action_t action;
  const char *reason; /* static, from the policy */
  double predicted_s; /* remaining time of the path taken; NAN: no prediction */
  double predicted_usd;
  char change[80];
} run_decision_rec;

typedef struct {
  char name[WIRE_NAME_MAX + 1];
  uint64_t start, end; /* end 0: unknown */
} run_phase_info;

/* One node loss (or job crash), from detection to the first PI after. */
typedef struct {
  double t_s;             /* detected */
  double last_pi_s;       /* end of the last PI before it */
  char what[200];         /* "n2 (eff)" or "job crashed (status 137)" */
  char replacement[200];  /* "n4 (eff)", "none: continuing on 2 nodes" */
  uint64_t ck_next;       /* first iteration the checkpoint does not hold */
  uint64_t done;          /* iterations done when it happened */
  int to_launch;
  double first_pi_s, downtime_s, cost_usd;
  int done_flag;
} run_loss;

typedef struct {
  const run_opts *o;
  const run_config *cfg;
  FILE *out;
  char run_dir[PATH_MAX];
  char token[33];
  journal *j;
  catalog *cat;
  provider *p;
  char agent[PATH_MAX * 2 + 64];
  run_node nodes[RUN_NODES_MAX];
  size_t nn;
  run_launch launches[RUN_LAUNCHES_MAX];
  int nl;
  run_switch sw[RUN_LAUNCHES_MAX];
  int nsw;
  run_decision_rec *dec;
  size_t ndec;
  policy_cfg_t pcfg;
  policy_decision_t last;
  int have_last;
  run_state state;
  double t0, next_decide_s, end_s;
  double batch;      /* policy batch: config or measured */
  uint64_t done_iters; /* iterations completed, over every launch */
  uint64_t total_iters; /* 0: unknown */
  int tty, status_shown;
  double last_status_s;
  int can_resume;
  /* Faults: the last complete checkpoint any launch reported, and the
   * losses so far.  done_iters counts launches from done_from on only,
   * from at least done_floor: after a loss the job redoes what the
   * checkpoint did not hold. */
  int have_ck;
  intake_checkpoint ck;
  run_loss loss[RUN_LOSSES_MAX];
  int nloss, retries;
  int done_from;
  uint64_t done_floor;
  double next_health_s;
  int lock_fd;
  int launch_base; /* launches of earlier controllers of this run (resume) */
  double ended_cost_usd, ended_total_s; /* from report.json; < 0: unknown */
} run_ctx;

static volatile sig_atomic_t run_signal;

static void run_on_signal(int sig) { run_signal = sig; }

/* ---- small helpers --------------------------------------------------- */

static void run_status_clear(run_ctx *c) {
  if (c->tty && c->status_shown) {
    fputs("\r\033[K", stderr);
    c->status_shown = 0;
  }
}

static void run_say(run_ctx *c, log_level lv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void run_say(run_ctx *c, log_level lv, const char *fmt, ...) {
  run_status_clear(c);
  va_list ap;
  va_start(ap, fmt);
  pm_vlog(lv, fmt, ap);
  va_end(ap);
}

static json_object *run_jrec(const char *ev) {
  json_object *o = json_object_new_object();
  json_object_object_add(o, "ev", json_object_new_string(ev));
  json_object_object_add(o, "t", json_object_new_double(clock_real_s()));
  return o;
}

static void run_jput(run_ctx *c, json_object *o, int sync) {
  if (c->j) {
    journal_append(c->j, o);
    if (sync) journal_sync(c->j);
  }
  json_object_put(o);
}

static run_node *run_node_find(run_ctx *c, const char *id) {
  for (size_t i = 0; i < c->nn; i++)
    if (!strcmp(c->nodes[i].pn.id, id)) return &c->nodes[i];
  return NULL;
}

static const char *run_node_type(run_ctx *c, const char *id) {
  run_node *n = run_node_find(c, id);
  return n ? n->pn.type : NULL;
}

/* "2xc5.large+1xm5.large" from a set of node indices, in first-seen order. */
static void run_composition(run_ctx *c, const size_t *idx, size_t n, char *buf, size_t cap) {
  const char *types[RUN_CONFIG_NODES_MAX];
  int counts[RUN_CONFIG_NODES_MAX];
  size_t nt = 0;
  for (size_t i = 0; i < n; i++) {
    const char *t = c->nodes[idx[i]].pn.type;
    size_t k = 0;
    while (k < nt && strcmp(types[k], t)) k++;
    if (k == nt) {
      types[nt] = t;
      counts[nt++] = 0;
    }
    counts[k]++;
  }
  size_t off = 0;
  buf[0] = '\0';
  for (size_t k = 0; k < nt && off < cap; k++) {
    int w = snprintf(buf + off, cap - off, "%s%dx%s", k ? "+" : "", counts[k], types[k]);
    if (w < 0) break;
    off += (size_t)w;
  }
}

static run_launch *run_cur(run_ctx *c) { return c->nl ? &c->launches[c->nl - 1] : NULL; }

static double run_pi_end_s(const intake_pi *pi) {
  return (double)(pi->t_begin_ns + pi->wall_ns) / 1e9;
}

/* ---- nodes ----------------------------------------------------------- */

static int run_nodes_start(run_ctx *c, const char *type, unsigned count, int incoming) {
  if (c->nn + count > RUN_NODES_MAX) {
    run_say(c, LOG_ERR, "run: more than %d nodes in one run", RUN_NODES_MAX);
    return PM_ENOSPC;
  }
  provider_node out[RUN_CONFIG_NODES_MAX];
  if (count > RUN_CONFIG_NODES_MAX) return PM_EINVAL;
  int rc = c->p->ops->start(c->p, type, count, out);
  if (rc) {
    run_say(c, LOG_ERR, "run: cannot start %u x %s: %s", count, type, c->p->err);
    return rc;
  }
  for (unsigned i = 0; i < count; i++) {
    run_node *n = &c->nodes[c->nn++];
    memset(n, 0, sizeof *n);
    n->pn = out[i];
    n->incoming = incoming;
  }
  return 0;
}

static void run_node_stop(run_ctx *c, run_node *n) {
  if (n->stopped) return;
  if (c->p->ops->stop(c->p, n->pn.id, NULL))
    run_say(c, LOG_WARN, "run: stopping node %s: %s", n->pn.id, c->p->err);
  n->stopped = 1;
  c->p->ops->alive(c->p, n->pn.id, &n->pn);
}

/* Terminates every node the provider knows for this run, ours or not
 * (a node record from a half-failed start included). */
static void run_nodes_stop_all(run_ctx *c) {
  for (size_t i = 0; i < c->nn; i++) run_node_stop(c, &c->nodes[i]);
  provider_node *all = NULL;
  size_t n = 0;
  if (c->p->ops->list(c->p, &all, &n) == 0)
    for (size_t i = 0; i < n; i++)
      if (all[i].state != NODE_TERMINATED) c->p->ops->stop(c->p, all[i].id, NULL);
  free(all);
}

/* Boots have been running in the background; stage each booted node
 * (real copy) and report whether every node in the set is ready. */
static int run_nodes_setup(run_ctx *c, int incoming_only, int *all_ready) {
  const char *paths[RUN_CONFIG_STAGE_MAX];
  for (size_t s = 0; s < c->cfg->nstage; s++) paths[s] = c->cfg->stage[s];
  *all_ready = 1;
  for (size_t i = 0; i < c->nn; i++) {
    run_node *n = &c->nodes[i];
    if (n->stopped || (incoming_only && !n->incoming) || (!incoming_only && !n->member))
      continue;
    if (n->pn.state == NODE_READY) continue;
    int r = c->p->ops->alive(c->p, n->pn.id, &n->pn);
    if (r < 0) {
      run_say(c, LOG_ERR, "run: node %s: %s", n->pn.id, c->p->err);
      return r;
    }
    if (r == 0 || n->pn.state == NODE_BOOTING || n->pn.state == NODE_REQUESTED) {
      *all_ready = 0;
      continue;
    }
    if (n->pn.state != NODE_READY) {
      int rc = c->p->ops->stage(c->p, n->pn.id, paths, c->cfg->nstage);
      if (rc) {
        run_say(c, LOG_ERR, "run: staging node %s: %s", n->pn.id, c->p->err);
        return rc;
      }
      c->p->ops->alive(c->p, n->pn.id, &n->pn);
    }
  }
  return 0;
}

/* ---- launching -------------------------------------------------------- */

/* arg with every {checkpoint} replaced by path, malloc'd. */
static char *run_subst(const char *arg, const char *path) {
  size_t tl = strlen(RUN_CONFIG_CHECKPOINT_TOKEN), pl = strlen(path), n = 0;
  for (const char *s = strstr(arg, RUN_CONFIG_CHECKPOINT_TOKEN); s;
       s = strstr(s + tl, RUN_CONFIG_CHECKPOINT_TOKEN))
    n++;
  char *out = malloc(strlen(arg) + n * pl + 1);
  if (!out) return NULL;
  char *w = out;
  const char *r = arg;
  for (const char *s; (s = strstr(r, RUN_CONFIG_CHECKPOINT_TOKEN)); r = s + tl) {
    memcpy(w, r, (size_t)(s - r));
    w += s - r;
    memcpy(w, path, pl);
    w += pl;
  }
  strcpy(w, r);
  return out;
}

/* The mpirun argv for the host set of L; ckpt non-NULL appends the
 * resume arguments.  0 or PM_ENOMEM; *out freed with launch_strv_free. */
static int run_mpirun_argv(run_ctx *c, const run_launch *L, const char *ckpt, char ***out) {
  *out = NULL;
  char hosts[RUN_CONFIG_NODES_MAX * PROVIDER_ID_MAX];
  size_t off = 0;
  hosts[0] = '\0';
  for (size_t i = 0; i < L->nhosts; i++)
    off += (size_t)snprintf(hosts + off, sizeof hosts - off, "%s%s", i ? "," : "",
                            c->nodes[L->host[i]].pn.id);
  size_t nres = ckpt ? c->cfg->nresume : 0;
  const char **cmd = calloc(c->cfg->ncommand + nres + 1, sizeof *cmd);
  char **res = calloc(nres + 1, sizeof *res);
  int rc = cmd && res ? 0 : PM_ENOMEM;
  for (size_t i = 0; !rc && i < c->cfg->ncommand; i++) cmd[i] = c->cfg->command[i];
  for (size_t i = 0; !rc && i < nres; i++)
    if (!(cmd[c->cfg->ncommand + i] = res[i] = run_subst(c->cfg->resume[i], ckpt)))
      rc = PM_ENOMEM;
  /* every local node is this host: loopback only */
  static const char *const mca[] = {"plm_rsh_agent", NULL, "btl", "self,tcp",
                                    "btl_tcp_if_include", "lo", "oob_tcp_if_include", "lo",
                                    NULL};
  const char *mca_v[sizeof mca / sizeof mca[0]];
  memcpy(mca_v, mca, sizeof mca);
  mca_v[1] = c->agent;
  static const char *const env[] = {"PARAMOUNT_ENDPOINT", "PARAMOUNT_TOKEN", NULL};
  launch_mpirun m = {.mpirun = c->o->mpirun, .np = L->nhosts, .hosts = hosts, .mca = mca_v,
                     .env = env, .cmd = cmd};
  /* Each rank starts in its node's working directory, beside what was
   * staged there (one mpirun context per rank). */
  static char wdirs[RUN_CONFIG_NODES_MAX][PATH_MAX];
  const char *host_v[RUN_CONFIG_NODES_MAX], *wdir_v[RUN_CONFIG_NODES_MAX];
  int per_rank = c->p->ops->workdir != NULL;
  for (size_t i = 0; !rc && per_rank && i < L->nhosts; i++) {
    host_v[i] = c->nodes[L->host[i]].pn.id;
    wdir_v[i] = wdirs[i];
    rc = c->p->ops->workdir(c->p, host_v[i], wdirs[i], sizeof wdirs[i]);
  }
  if (!rc && per_rank) {
    m.host_v = host_v;
    m.wdir_v = wdir_v;
  }
  if (!rc) rc = launch_mpirun_argv(&m, out);
  launch_strv_free(res);
  free(cmd);
  return rc;
}

/* The directory a reported checkpoint must lie in (docs/security.md):
 * job.checkpoint_dir, else the run directory. */
static const char *run_checkpoint_root(const run_config *cfg, const char *run_dir) {
  return cfg->checkpoint_dir[0] ? cfg->checkpoint_dir : run_dir;
}

static int run_launch_start(run_ctx *c, run_launch *L, const char *ckpt) {
  char err[512] = "";
  intake_opts io = {.token = c->token, .journal = c->j, .err = err, .err_cap = sizeof err,
                    .checkpoint_root = run_checkpoint_root(c->cfg, c->run_dir)};
  int rc = intake_open(&io, &L->in);
  if (rc) {
    run_say(c, LOG_ERR, "run: intake: %s", err[0] ? err : pm_strerror(rc));
    return rc;
  }
  char endpoint[256];
  intake_endpoint(L->in, endpoint, sizeof endpoint);
  int idx = (int)(L - c->launches);
  snprintf(L->log, sizeof L->log, "%s/job-%d.log", c->run_dir, c->launch_base + idx);
  if (ckpt) snprintf(L->resumed_from, sizeof L->resumed_from, "%s", ckpt);
  char **argv = NULL, **envp = NULL;
  char ep[300], tk[64];
  snprintf(ep, sizeof ep, "PARAMOUNT_ENDPOINT=%s", endpoint);
  snprintf(tk, sizeof tk, "PARAMOUNT_TOKEN=%s", c->token);
  /* mpirun forwards both to every rank (-x); the token never reaches argv */
  const char *const set[] = {ep, tk, NULL};
  int arc = run_mpirun_argv(c, L, ckpt, &argv);
  if (!arc) arc = launch_env(set, &envp);
  int logfd = open(L->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (arc || logfd < 0 || nullfd < 0) {
    run_say(c, LOG_ERR, "run: cannot prepare launch %d (%s): %s", idx, L->log,
            arc ? pm_strerror(arc) : strerror(errno));
    rc = arc ? arc : PM_ESYS;
    goto done;
  }
  L->spawn_s = clock_real_s();
  /* Its own process group: a terminal ^C reaches only the controller,
   * which then stops the job and the nodes in order.  A SIGKILLed
   * controller takes mpirun with it, so no job runs on unwatched;
   * `paramount down` then clears the nodes.  A failed exec shows in the
   * job's log and as its exit status 127. */
  launch_opts lo = {.argv = argv, .envp = envp, .stdin_fd = nullfd, .stdout_fd = logfd,
                    .stderr_fd = logfd, .new_pgrp = 1, .die_with_parent = 1,
                    .exec_fail_prefix = "paramount: run"};
  launch_child ch;
  if ((rc = launch_spawn(&lo, &ch))) goto done;
  pid_t pid = ch.pid;
  L->pid = pid;
  L->pidfd = ch.pidfd;
  if (L->pidfd < 0) {
    run_say(c, LOG_ERR, "run: pidfd_open: %s", strerror(ch.pidfd_errno));
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
    L->exited = 1;
    rc = PM_ESYS;
    goto done;
  }
  c->nl++;
  char comp[256];
  run_composition(c, L->host, L->nhosts, comp, sizeof comp);
  json_object *o = run_jrec(ckpt ? "relaunch" : "launch");
  json_object_object_add(o, "launch", json_object_new_int(c->launch_base + idx));
  json_object_object_add(o, "pid", json_object_new_int(pid));
  json_object_object_add(o, "endpoint", json_object_new_string(endpoint));
  json_object_object_add(o, "cluster", json_object_new_string(comp));
  json_object *hosts = json_object_new_array();
  for (size_t i = 0; i < L->nhosts; i++)
    json_object_array_add(hosts, json_object_new_string(c->nodes[L->host[i]].pn.id));
  json_object_object_add(o, "hosts", hosts);
  json_object *av = json_object_new_array();
  for (size_t i = 0; argv[i]; i++) json_object_array_add(av, json_object_new_string(argv[i]));
  json_object_object_add(o, "argv", av);
  if (ckpt) json_object_object_add(o, "checkpoint", json_object_new_string(ckpt));
  json_object_object_add(o, "log", json_object_new_string(L->log));
  run_jput(c, o, 1);
  run_say(c, LOG_INFO, "run: %s %d on %s (log: %s)", ckpt ? "relaunch" : "launch", idx, comp,
          L->log);
  rc = 0;
done:
  if (rc && L->in) {
    intake_close(L->in);
    L->in = NULL;
  }
  launch_strv_free(argv);
  launch_strv_free(envp);
  if (logfd >= 0) close(logfd);
  if (nullfd >= 0) close(nullfd);
  return rc;
}

static void run_launch_reap(run_launch *L) {
  if (L->exited || L->pid <= 0) return;
  int st = 0;
  L->status = launch_wait(L->pid, &st) ? 1 : launch_exit_code(st);
  L->exited = 1;
  L->exit_s = clock_real_s();
  if (L->pidfd >= 0) close(L->pidfd);
  L->pidfd = -1;
}

/* SIGTERM to mpirun's process group, SIGKILL after a grace period. */
static void run_launch_kill(run_launch *L) {
  if (L->exited || L->pid <= 0) return;
  kill(-L->pid, SIGTERM);
  struct pollfd pf = {.fd = L->pidfd, .events = POLLIN};
  if (L->pidfd < 0 || poll(&pf, 1, (int)(RUN_KILL_GRACE_S * 1000)) <= 0) kill(-L->pid, SIGKILL);
  run_launch_reap(L);
}

/* ---- measurements ----------------------------------------------------- */

/* Recomputes done_iters, total_iters and the phase plan from every
 * launch's rank data.  Returns the number of phases (0: unknown). */
static size_t run_phases(run_ctx *c, run_phase_info *ph, size_t cap) {
  size_t n = 0;
  uint64_t done = 0;
  for (int l = 0; l < c->nl; l++) {
    size_t nr = 0;
    const intake_rank *const *rs = intake_ranks(c->launches[l].in, &nr);
    for (size_t r = 0; r < nr; r++) {
      const intake_rank *k = rs[r];
      if (l >= c->done_from && k->n_pis && k->pis[k->n_pis - 1].iter + 1 > done)
        done = k->pis[k->n_pis - 1].iter + 1;
      for (size_t p = 0; p < k->n_phases; p++) {
        const intake_phase *x = &k->phases[p];
        size_t i = 0;
        while (i < n && strcmp(ph[i].name, x->name)) i++;
        if (i == n) {
          if (n == cap) continue;
          memset(&ph[n], 0, sizeof ph[n]);
          snprintf(ph[n].name, sizeof ph[n].name, "%s", x->name);
          ph[n].start = x->first_iter;
          n++;
        }
        if (x->first_iter < ph[i].start) ph[i].start = x->first_iter;
        if (x->planned_iters && x->first_iter + x->planned_iters > ph[i].end)
          ph[i].end = x->first_iter + x->planned_iters;
      }
    }
  }
  c->done_iters = done > c->done_floor ? done : c->done_floor;
  if (!n) {
    ph[0].name[0] = '\0';
    ph[0].start = 0;
    ph[0].end = c->cfg->iterations;
    n = 1;
  }
  /* In execution order. */
  for (size_t i = 1; i < n; i++)
    for (size_t k = i; k > 0 && ph[k].start < ph[k - 1].start; k--) {
      run_phase_info t = ph[k];
      ph[k] = ph[k - 1];
      ph[k - 1] = t;
    }
  if (!ph[n - 1].end && c->cfg->iterations) ph[n - 1].end = c->cfg->iterations;
  c->total_iters = ph[n - 1].end;
  for (size_t i = 0; i < n; i++)
    if (!ph[i].end) {
      c->total_iters = 0;
      return 0;
    }
  return n;
}

/* Global samples per iteration (per rank for rank-batch scaling): the
 * config's, else what the latest launch's ranks reported. */
static double run_batch(run_ctx *c) {
  if (c->cfg->batch > 0) return c->cfg->batch;
  for (int l = c->nl - 1; l >= 0; l--) {
    size_t nr = 0;
    const intake_rank *const *rs = intake_ranks(c->launches[l].in, &nr);
    double sum = 0, r0 = 0;
    for (size_t r = 0; r < nr; r++) {
      double mx = 0;
      for (size_t i = rs[r]->n_pis > 8 ? rs[r]->n_pis - 8 : 0; i < rs[r]->n_pis; i++)
        if ((double)rs[r]->pis[i].samples > mx) mx = (double)rs[r]->pis[i].samples;
      sum += mx;
      if (!r0) r0 = mx;
    }
    if (sum > 0) return c->cfg->scaling == RUN_SCALING_RANK_BATCH ? r0 : sum;
  }
  return 0;
}

/* Mean wall time of the latest PIs of the current launch (0: none). */
static double run_recent_pi_s(run_ctx *c) {
  run_launch *L = run_cur(c);
  if (!L) return 0;
  const intake_rank *k = intake_rank_find(L->in, 0);
  if (!k || !k->n_pis) return 0;
  double s = 0;
  size_t m = 0;
  for (size_t i = k->n_pis > 5 ? k->n_pis - 5 : 0; i < k->n_pis; i++, m++)
    s += (double)k->pis[i].wall_ns / 1e9;
  return s / (double)m;
}

/* First PI end over the ranks of a launch (0: none yet); *init_begin_s
 * gets the earliest INIT_BEGIN.  all: every rank must have one. */
static double run_first_pi_s(const run_launch *L, double *init_begin_s) {
  size_t nr = 0;
  const intake_rank *const *rs = intake_ranks(L->in, &nr);
  double first = 0, ib = 0;
  if (nr < L->nhosts) return 0;
  for (size_t r = 0; r < nr; r++) {
    if (!rs[r]->n_pis) return 0;
    double e = run_pi_end_s(&rs[r]->pis[0]);
    if (!first || e < first) first = e;
    double b = (double)rs[r]->init_begin_ns / 1e9;
    if (b > 0 && (!ib || b < ib)) ib = b;
  }
  if (init_begin_s) *init_begin_s = ib;
  return first;
}

/* ---- the policy ------------------------------------------------------- */

typedef struct {
  policy_series_t *series;
  policy_pi_t *pis;
  size_t n_series;
  policy_type_t types[POLICY_MAX_TYPES];
  policy_node_t nodes[POLICY_MAX_NODES];
  size_t node_idx[POLICY_MAX_NODES];
  policy_phase_t phases[POLICY_MAX_PHASES];
  run_phase_info ph[POLICY_MAX_PHASES];
  policy_input_t in;
} run_input;

static void run_input_free(run_input *ri) {
  free(ri->series);
  free(ri->pis);
  ri->series = NULL;
  ri->pis = NULL;
}

/* Setup time of a type: measured request -> ready of its nodes, else the
 * catalog's boot delay plus the staging time seen so far. */
static double run_setup_s(run_ctx *c, const catalog_type *t) {
  double sum = 0, stage = 0;
  int n = 0, ns = 0;
  for (size_t i = 0; i < c->nn; i++) {
    const provider_node *p = &c->nodes[i].pn;
    if (p->ready_s > 0 && p->requested_s > 0) {
      if (!strcmp(p->type, t->name)) {
        sum += p->ready_s - p->requested_s;
        n++;
      }
      stage += p->stage_s;
      ns++;
    }
  }
  if (n) return sum / n;
  return t->boot_delay_s + (ns ? stage / ns : 0.1);
}

/* Builds the policy's input from every launch; 0, or PM_EAGAIN when the
 * job's length or batch is not known yet. */
static int run_input_build(run_ctx *c, double now, run_input *ri) {
  memset(ri, 0, sizeof *ri);
  policy_input_t *in = &ri->in;
  size_t nph = run_phases(c, ri->ph, POLICY_MAX_PHASES);
  if (!nph) return PM_EAGAIN;
  c->batch = run_batch(c);
  if (!(c->batch > 0)) return PM_EAGAIN;
  for (size_t i = 0; i < nph; i++) {
    ri->phases[i].name = ri->ph[i].name;
    ri->phases[i].iters_total = (double)(ri->ph[i].end - ri->ph[i].start);
    double d = (double)c->done_iters - (double)ri->ph[i].start;
    ri->phases[i].iters_done = d < 0 ? 0 : d > ri->phases[i].iters_total ? ri->phases[i].iters_total : d;
  }
  /* Series: one per (launch, rank, phase). */
  size_t npis = 0, nser = 0;
  for (int l = 0; l < c->nl; l++) {
    size_t nr = 0;
    const intake_rank *const *rs = intake_ranks(c->launches[l].in, &nr);
    for (size_t r = 0; r < nr; r++) {
      npis += rs[r]->n_pis;
      nser += rs[r]->n_phases + 1;
    }
  }
  ri->series = calloc(nser ? nser : 1, sizeof *ri->series);
  ri->pis = calloc(npis ? npis : 1, sizeof *ri->pis);
  if (!ri->series || !ri->pis) return PM_ENOMEM;
  size_t used = 0;
  for (int l = 0; l < c->nl; l++) {
    const run_launch *L = &c->launches[l];
    size_t nr = 0;
    const intake_rank *const *rs = intake_ranks(L->in, &nr);
    for (size_t r = 0; r < nr; r++) {
      const intake_rank *k = rs[r];
      const char *type = run_node_type(c, k->node);
      if (!type || !k->n_pis) continue;
      for (int32_t p = -1; p < (int32_t)k->n_phases; p++) {
        policy_series_t *s = &ri->series[ri->n_series];
        s->pis = ri->pis + used;
        for (size_t i = 0; i < k->n_pis; i++) {
          const intake_pi *x = &k->pis[i];
          if (x->phase != p) continue;
          policy_pi_t *y = &ri->pis[used++];
          y->t_s = run_pi_end_s(x);
          y->compute_s = (double)x->compute_ns / 1e9;
          y->comm_s = (double)x->comm_ns / 1e9;
          y->samples = (double)x->samples;
          s->n_pis++;
        }
        if (!s->n_pis) continue;
        s->type = type;
        s->phase = p >= 0 ? k->phases[p].name : NULL;
        s->launch = l;
        s->nodes = (int)L->nhosts;
        s->batch_per_rank = c->cfg->scaling == RUN_SCALING_RANK_BATCH
                                ? c->batch
                                : c->batch / (double)L->nhosts;
        ri->n_series++;
      }
    }
  }
  size_t nt = 0;
  for (size_t t = 0; t < c->cat->ntypes && nt < POLICY_MAX_TYPES; t++) {
    const catalog_type *ct = &c->cat->types[t];
    policy_type_t *y = &ri->types[nt++];
    y->name = ct->name;
    y->price_usd_per_hour = ct->price_usd_per_hour;
    y->billing_granularity_s = ct->billing_granularity_s;
    y->billing_minimum_s = ct->billing_minimum_s;
    y->setup_s = run_setup_s(c, ct);
    y->speed_hint = ct->cpu_fraction; /* the local emulation's real speed */
  }
  const run_launch *L = run_cur(c);
  size_t nn = 0;
  for (size_t i = 0; L && i < L->nhosts && nn < POLICY_MAX_NODES; i++) {
    const run_node *n = &c->nodes[L->host[i]];
    ri->nodes[nn].type = n->pn.type;
    ri->nodes[nn].requested_s = n->pn.requested_s;
    ri->node_idx[nn++] = L->host[i];
  }
  double spent = 0;
  for (size_t i = 0; i < c->nn; i++) spent += provider_node_cost_usd(&c->nodes[i].pn, now);
  /* Downtime parts: measured at earlier switches, else estimated from
   * the job's own first start (relaunch + init) and its PI time (the
   * agreed stop lands one or two PIs after the request). */
  double ck = 0, rs = 0;
  int k = 0;
  for (int s = 0; s < c->nsw; s++)
    if (c->sw[s].done) {
      ck += c->sw[s].ckpt_s - c->sw[s].stop_req_s;
      rs += c->sw[s].first_pi_s - c->sw[s].exit_s;
      k++;
    }
  if (k) {
    ck /= k;
    rs /= k;
  } else {
    ck = 2 * run_recent_pi_s(c) + 0.2;
    double first = run_first_pi_s(&c->launches[0], NULL);
    rs = first > 0 ? first - c->launches[0].spawn_s : 2.0;
  }
  in->now_s = now;
  in->series = ri->series;
  in->n_series = ri->n_series;
  in->types = ri->types;
  in->n_types = nt;
  in->nodes = ri->nodes;
  in->n_nodes = nn;
  in->phases = ri->phases;
  in->n_phases = nph;
  in->scaling = c->cfg->scaling == RUN_SCALING_RANK_BATCH ? POLICY_SCALE_RANK_BATCH
                                                           : POLICY_SCALE_GLOBAL_BATCH;
  in->batch = c->batch;
  in->spent_usd = spent;
  in->checkpoint_s = ck > 0 ? ck : 0;
  in->restart_s = rs > 0 ? rs : 0;
  in->last_change_s = L ? L->spawn_s : c->t0;
  in->n_switches = c->nsw;
  return 0;
}

static void run_switch_begin(run_ctx *c, const run_input *ri, const policy_decision_t *d) {
  run_launch *L = run_cur(c);
  run_switch *s = &c->sw[c->nsw];
  memset(s, 0, sizeof *s);
  s->from_launch = c->nl - 1;
  s->decide_s = d->now_s;
  snprintf(s->action, sizeof s->action, "%s", policy_action_name(d->action));
  run_composition(c, L->host, L->nhosts, s->from, sizeof s->from);
  size_t before = c->nn;
  if (d->add_count > 0 &&
      run_nodes_start(c, d->add_type, (unsigned)d->add_count, 1)) {
    /* Nothing changes; the policy will be asked again later. */
    json_object *o = run_jrec("switch_failed");
    json_object_object_add(o, "reason", json_object_new_string(c->p->err));
    run_jput(c, o, 1);
    c->next_decide_s = d->now_s + 3 * c->cfg->interval_s;
    return;
  }
  for (int i = 0; i < d->n_remove; i++) c->nodes[ri->node_idx[d->remove[i]]].leaving = 1;
  /* Target composition: members that stay, then the new ones. */
  size_t idx[RUN_CONFIG_NODES_MAX], n = 0;
  for (size_t i = 0; i < L->nhosts; i++)
    if (!c->nodes[L->host[i]].leaving) idx[n++] = L->host[i];
  for (size_t i = before; i < c->nn && n < RUN_CONFIG_NODES_MAX; i++) idx[n++] = i;
  run_composition(c, idx, n, s->to, sizeof s->to);
  c->nsw++;
  json_object *o = run_jrec("switch_begin");
  json_object_object_add(o, "from", json_object_new_string(s->from));
  json_object_object_add(o, "to", json_object_new_string(s->to));
  json_object *ids = json_object_new_array();
  for (size_t i = before; i < c->nn; i++)
    json_object_array_add(ids, json_object_new_string(c->nodes[i].pn.id));
  json_object_object_add(o, "new_nodes", ids);
  run_jput(c, o, 1);
  run_say(c, LOG_INFO, "run: %s: %s -> %s (%s); new nodes set up while the job trains",
          s->action, s->from, s->to, d->reason);
  c->state = RUN_SETUP;
}

static void run_decide(run_ctx *c, double now) {
  static run_input ri;
  int rc = run_input_build(c, now, &ri);
  if (rc) {
    run_input_free(&ri);
    if (rc != PM_EAGAIN) run_say(c, LOG_WARN, "run: policy input: %s", pm_strerror(rc));
    return;
  }
  policy_decision_t *d = &c->last;
  rc = policy_decide(&ri.in, &c->pcfg, d);
  if (rc) {
    run_say(c, LOG_WARN, "run: policy refused its input: %s", pm_strerror(rc));
    run_input_free(&ri);
    return;
  }
  c->have_last = 1;
  json_object *o = NULL;
  if (policy_decision_to_json(d, &o) == 0) {
    json_object_object_add(o, "ev", json_object_new_string("decision"));
    json_object_object_add(o, "launch", json_object_new_int(c->launch_base + c->nl - 1));
    json_object_object_add(o, "iterations_done", json_object_new_int64((int64_t)c->done_iters));
    run_jput(c, o, 0);
  }
  int acts = d->action == POLICY_SWITCH || d->action == POLICY_PROBE;
  if (c->ndec < RUN_DECISIONS_MAX) {
    run_decision_rec *r = &c->dec[c->ndec++];
    memset(r, 0, sizeof *r);
    r->t_s = now;
    r->action = d->action;
    r->reason = d->reason;
    const policy_prediction_t *p = acts && d->has_target ? &d->target : &d->stay;
    r->predicted_s = p->time_s > 0 ? p->time_s : NAN;
    r->predicted_usd = p->total_usd;
    if (acts)
      snprintf(r->change, sizeof r->change, "+%dx%s -%d", d->add_count, d->add_type, d->n_remove);
  }
  if (acts && !c->can_resume) {
    if (c->ndec == 1 || c->dec[c->ndec - 2].action != d->action)
      run_say(c, LOG_WARN, "run: the policy would %s, but job.resume is not set: staying",
              policy_action_name(d->action));
  } else if (acts && (d->add_count > 0 || d->n_remove > 0)) {
    run_switch_begin(c, &ri, d);
  }
  /* Waiting for data: ask again after about one more PI rather than a
   * whole interval, since every second on a mixed cluster is paid at its
   * slowest node's pace. */
  if (d->action == POLICY_WAIT && c->state == RUN_RUNNING) {
    double pi = run_recent_pi_s(c);
    if (pi < RUN_WAIT_REDECIDE_MIN_S) pi = RUN_WAIT_REDECIDE_MIN_S;
    if (now + pi < c->next_decide_s) c->next_decide_s = now + pi;
  }
  run_input_free(&ri);
}

/* ---- the switch ------------------------------------------------------ */

static const intake_checkpoint *run_checkpoint_after(const run_launch *L, double t_s) {
  size_t nr = 0;
  const intake_rank *const *rs = intake_ranks(L->in, &nr);
  const intake_checkpoint *best = NULL;
  for (size_t r = 0; r < nr; r++)
    for (size_t i = 0; i < rs[r]->n_checkpoints; i++) {
      const intake_checkpoint *k = &rs[r]->checkpoints[i];
      /* Rank clocks are this host's: a small slack covers rounding. */
      if ((double)k->t_ns / 1e9 + 0.05 >= t_s && (!best || k->iter > best->iter)) best = k;
    }
  return best;
}

/* The stopped job left a checkpoint: relaunch on the new set, then let
 * the leaving nodes go. */
static int run_switch_relaunch(run_ctx *c, const intake_checkpoint *ck) {
  run_launch *old = run_cur(c);
  run_switch *s = &c->sw[c->nsw - 1];
  s->ckpt_s = (double)ck->t_ns / 1e9;
  s->exit_s = old->exit_s;
  if (c->nl == RUN_LAUNCHES_MAX) {
    run_say(c, LOG_ERR, "run: more than %d launches", RUN_LAUNCHES_MAX);
    return PM_ENOSPC;
  }
  run_launch *L = &c->launches[c->nl];
  memset(L, 0, sizeof *L);
  L->pidfd = -1;
  for (size_t i = 0; i < old->nhosts; i++)
    if (!c->nodes[old->host[i]].leaving) L->host[L->nhosts++] = old->host[i];
  for (size_t i = 0; i < c->nn; i++)
    if (c->nodes[i].incoming && !c->nodes[i].stopped && L->nhosts < RUN_CONFIG_NODES_MAX)
      L->host[L->nhosts++] = i;
  int rc = run_launch_start(c, L, ck->path);
  if (rc) return rc;
  s->to_launch = c->nl - 1;
  for (size_t i = 0; i < c->nn; i++) {
    run_node *n = &c->nodes[i];
    if (n->leaving) {
      n->member = 0;
      run_node_stop(c, n);
    }
    if (n->incoming) n->member = 1;
    n->incoming = n->leaving = 0;
  }
  c->state = RUN_RUNNING;
  c->next_decide_s = clock_real_s() + c->cfg->interval_s;
  return 0;
}

/* The first PI on the new set closes the switch: journal its downtime. */
static void run_switch_check_done(run_ctx *c) {
  if (!c->nsw) return;
  run_switch *s = &c->sw[c->nsw - 1];
  if (s->done || !s->exit_s || s->to_launch <= 0) return;
  double ib = 0, first = run_first_pi_s(&c->launches[s->to_launch], &ib);
  if (!first) return;
  s->init_begin_s = ib > 0 ? ib : s->exit_s;
  s->first_pi_s = first;
  s->done = 1;
  json_object *o = run_jrec("switch_done");
  json_object_object_add(o, "from", json_object_new_string(s->from));
  json_object_object_add(o, "to", json_object_new_string(s->to));
  json_object_object_add(o, "setup_s", json_object_new_double(s->ready_s - s->decide_s));
  json_object_object_add(o, "checkpoint_s", json_object_new_double(s->ckpt_s - s->stop_req_s));
  json_object_object_add(o, "restart_s", json_object_new_double(s->init_begin_s - s->exit_s));
  json_object_object_add(o, "reinit_s", json_object_new_double(s->first_pi_s - s->init_begin_s));
  json_object_object_add(o, "downtime_s", json_object_new_double(s->first_pi_s - s->stop_req_s));
  run_jput(c, o, 1);
  run_say(c, LOG_INFO,
          "run: switch %d done: %s -> %s, setup %.2f s (while training), checkpoint %.2f s, "
          "restart %.2f s, re-init %.2f s",
          c->nsw, s->from, s->to, s->ready_s - s->decide_s, s->ckpt_s - s->stop_req_s,
          s->init_begin_s - s->exit_s, s->first_pi_s - s->init_begin_s);
}

/* ---- faults ------------------------------------------------------------ */

/* Keeps c->ck at the newest checkpoint any launch reported.  Rank 0
 * writes them, atomically, to one path, so the file there holds at
 * least what the newest event says. */
static void run_ckpt_refresh(run_ctx *c) {
  for (int l = 0; l < c->nl; l++) {
    size_t nr = 0;
    const intake_rank *const *rs = intake_ranks(c->launches[l].in, &nr);
    for (size_t r = 0; r < nr; r++)
      for (size_t i = 0; i < rs[r]->n_checkpoints; i++) {
        const intake_checkpoint *k = &rs[r]->checkpoints[i];
        if (!c->have_ck || k->iter > c->ck.iter) {
          c->ck = *k;
          c->have_ck = 1;
        }
      }
  }
}

/* End of the last PI of launch L over its ranks (0: none). */
static double run_last_pi_s(const run_launch *L) {
  size_t nr = 0;
  const intake_rank *const *rs = intake_ranks(L->in, &nr);
  double last = 0;
  for (size_t r = 0; r < nr; r++)
    if (rs[r]->n_pis && run_pi_end_s(&rs[r]->pis[rs[r]->n_pis - 1]) > last)
      last = run_pi_end_s(&rs[r]->pis[rs[r]->n_pis - 1]);
  return last;
}

/* Members of the current launch that are gone: their node no longer
 * exists or cannot run commands (cgroup removed, terminated behind our
 * back, preempted), or with heartbeats set, a rank on it went silent:
 * it said HELLO, has not finalized, the job still runs, and nothing
 * came from it for job.heartbeat_timeout_s (libparamount's thread sends
 * HEARTBEAT about once a second whatever the app does, so a long MPI
 * init or first iteration is not silence; a rank that has not connected
 * yet is not judged).  Fills idx[] (indices into c->nodes) and
 * returns how many; cause[cap] says why, for the journal. */
static size_t run_members_lost(run_ctx *c, size_t *idx, size_t cap, int heartbeats,
                               char *cause, size_t cause_cap) {
  run_launch *L = run_cur(c);
  cause[0] = '\0';
  if (!L) return 0;
  size_t n = 0, nr = 0, off = 0;
  const intake_rank *const *rs = intake_ranks(L->in, &nr);
  uint64_t now_ns = (uint64_t)(clock_real_s() * 1e9);
  double limit_s = c->cfg->heartbeat_timeout_s;
  if (!(limit_s > 0)) limit_s = RUN_CONFIG_HEARTBEAT_TIMEOUT_S; /* NEVER: the parser sets it */
  uint64_t limit_ns = (uint64_t)(limit_s * 1e9);
  for (size_t h = 0; h < L->nhosts && n < cap; h++) {
    run_node *nd = &c->nodes[L->host[h]];
    int r = c->p->ops->alive(c->p, nd->pn.id, &nd->pn);
    int gone = r == 0 && nd->pn.state != NODE_BOOTING && nd->pn.state != NODE_REQUESTED;
    char why[96] = "";
    if (gone) snprintf(why, sizeof why, "%s: not alive (provider check)", nd->pn.id);
    for (size_t k = 0; !gone && heartbeats && !L->exited && k < nr; k++)
      if (!strcmp(rs[k]->node, nd->pn.id) && rs[k]->last_heard_ns && !rs[k]->finalized &&
          now_ns > rs[k]->last_heard_ns + limit_ns) {
        gone = 1;
        snprintf(why, sizeof why, "%s: rank %u silent for %.1f s", nd->pn.id, rs[k]->rank,
                 (double)(now_ns - rs[k]->last_heard_ns) / 1e9);
      }
    if (!gone) continue;
    idx[n++] = L->host[h];
    int w = snprintf(cause + off, cause_cap - off, "%s%s", off ? "; " : "", why);
    if (w > 0 && off + (size_t)w < cause_cap) off += (size_t)w;
  }
  return n;
}

static void run_ids(run_ctx *c, const size_t *idx, size_t n, char *buf, size_t cap) {
  size_t off = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < n && off < cap; i++) {
    int w = snprintf(buf + off, cap - off, "%s%s (%s)", i ? ", " : "", c->nodes[idx[i]].pn.id,
                     c->nodes[idx[i]].pn.type);
    if (w < 0) break;
    off += (size_t)w;
  }
}

/* Carries the job past a fault.  The nodes in lost[] (none when the job
 * crashed on live nodes) are terminated and replaced by one node of the
 * same type each; when no replacement can be had the job continues on
 * the survivors.  A switch under way is called off.  The job is relaunched
 * from the last complete checkpoint (from its start when there is none).
 * 0, or a PM_E* when the run cannot go on. */
static int run_recover(run_ctx *c, const size_t *lost, size_t nlost, const char *why) {
  run_launch *L = run_cur(c);
  double now = clock_real_s();
  /* The lost nodes go first: a stopped (hung) daemon on one of them
   * would keep mpirun deaf to SIGTERM for the whole grace period. */
  for (size_t i = 0; i < nlost; i++) {
    run_node_stop(c, &c->nodes[lost[i]]);
    c->nodes[lost[i]].member = 0;
  }
  if (!L->exited) run_launch_kill(L);
  run_ckpt_refresh(c);
  run_phases(c, (run_phase_info[POLICY_MAX_PHASES]){0}, POLICY_MAX_PHASES);
  if (c->nloss == RUN_LOSSES_MAX || c->nl >= RUN_LAUNCHES_MAX) {
    run_say(c, LOG_ERR, "run: too many faults (%d) or launches (%d) in one run", c->nloss, c->nl);
    return PM_ENOSPC;
  }
  if (c->state == RUN_SETUP || c->state == RUN_STOPPING) {
    /* The old set is what the checkpoint and the survivors belong to. */
    for (size_t i = 0; i < c->nn; i++) {
      if (c->nodes[i].incoming) run_node_stop(c, &c->nodes[i]);
      c->nodes[i].incoming = c->nodes[i].leaving = 0;
    }
    if (c->nsw && !c->sw[c->nsw - 1].exit_s) c->nsw--;
    c->state = RUN_RUNNING;
  }
  run_loss *x = &c->loss[c->nloss++];
  memset(x, 0, sizeof *x);
  x->t_s = now;
  x->ck_next = c->have_ck ? c->ck.iter + 1 : 0;
  x->done = c->done_iters;
  x->last_pi_s = run_last_pi_s(L);
  if (!x->last_pi_s) x->last_pi_s = now;
  if (nlost) run_ids(c, lost, nlost, x->what, sizeof x->what);
  else snprintf(x->what, sizeof x->what, "%s", why);
  /* Replacements boot while nothing trains: the job is down anyway. */
  size_t before = c->nn;
  int replaced = 1;
  for (size_t i = 0; i < nlost && replaced; i++) {
    char type[CATALOG_NAME_MAX];
    snprintf(type, sizeof type, "%s", c->nodes[lost[i]].pn.type);
    if (run_nodes_start(c, type, 1, 1)) replaced = 0;
  }
  while (replaced && c->nn > before) {
    int ready = 0;
    if (run_nodes_setup(c, 1, &ready)) replaced = 0;
    if (ready) break;
    if (run_signal) return PM_EAGAIN;
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  if (!replaced)
    for (size_t i = before; i < c->nn; i++) {
      run_node_stop(c, &c->nodes[i]);
      c->nodes[i].incoming = 0;
    }
  run_launch *N = &c->launches[c->nl];
  memset(N, 0, sizeof *N);
  N->pidfd = -1;
  for (size_t h = 0; h < L->nhosts; h++)
    if (!c->nodes[L->host[h]].stopped) N->host[N->nhosts++] = L->host[h];
  size_t fresh[RUN_CONFIG_NODES_MAX], nfresh = 0;
  for (size_t i = before; i < c->nn && N->nhosts < RUN_CONFIG_NODES_MAX; i++)
    if (c->nodes[i].incoming && !c->nodes[i].stopped) {
      N->host[N->nhosts++] = i;
      fresh[nfresh++] = i;
    }
  if (!N->nhosts) {
    run_say(c, LOG_ERR, "run: %s and no node is left to continue on", x->what);
    return PM_ESTATE;
  }
  if (nfresh) run_ids(c, fresh, nfresh, x->replacement, sizeof x->replacement);
  else if (nlost)
    snprintf(x->replacement, sizeof x->replacement, "none: continuing on %zu node%s",
             N->nhosts, N->nhosts == 1 ? "" : "s");
  else
    snprintf(x->replacement, sizeof x->replacement, "none needed: same nodes");
  uint64_t lost_iters = x->done > x->ck_next ? x->done - x->ck_next : 0;
  json_object *o = run_jrec("node_lost");
  json_object *ids = json_object_new_array();
  for (size_t i = 0; i < nlost; i++)
    json_object_array_add(ids, json_object_new_string(c->nodes[lost[i]].pn.id));
  json_object_object_add(o, "nodes", ids);
  json_object_object_add(o, "what", json_object_new_string(x->what));
  json_object_object_add(o, "cause", json_object_new_string(why));
  json_object_object_add(o, "launch", json_object_new_int(c->launch_base + c->nl - 1));
  json_object_object_add(o, "iterations_done", json_object_new_int64((int64_t)x->done));
  json_object_object_add(o, "checkpoint_next_iter", json_object_new_int64((int64_t)x->ck_next));
  json_object_object_add(o, "iterations_lost", json_object_new_int64((int64_t)lost_iters));
  if (c->have_ck) json_object_object_add(o, "checkpoint", json_object_new_string(c->ck.path));
  json_object *rep = json_object_new_array();
  for (size_t i = 0; i < nfresh; i++)
    json_object_array_add(rep, json_object_new_string(c->nodes[fresh[i]].pn.id));
  json_object_object_add(o, "replacement", rep);
  if (c->cfg->checkpoint_every) /* the bound the report holds the loss to */
    json_object_object_add(o, "checkpoint_every",
                           json_object_new_int64((int64_t)c->cfg->checkpoint_every));
  run_jput(c, o, 1);
  run_say(c, LOG_WARN,
          "run: lost %s%s%s%s after %llu iterations; resuming at iteration %llu (%llu lost), "
          "replacement: %s",
          x->what, nlost ? " [" : "", nlost ? why : "", nlost ? "]" : "",
          (unsigned long long)x->done, (unsigned long long)x->ck_next,
          (unsigned long long)lost_iters, x->replacement[0] ? x->replacement : "-");
  if (c->cfg->checkpoint_every && lost_iters > c->cfg->checkpoint_every)
    run_say(c, LOG_WARN, "run: %llu iterations lost, more than job.checkpoint_every = %llu: "
            "does the job checkpoint that often?", (unsigned long long)lost_iters,
            c->cfg->checkpoint_every);
  int rc = run_launch_start(c, N, c->have_ck ? c->ck.path : NULL);
  if (rc) return rc;
  for (size_t i = 0; i < c->nn; i++)
    if (c->nodes[i].incoming) {
      c->nodes[i].incoming = 0;
      c->nodes[i].member = !c->nodes[i].stopped;
    }
  x->to_launch = c->nl - 1;
  c->done_from = c->nl - 1;
  c->done_floor = x->ck_next;
  c->next_decide_s = clock_real_s() + c->cfg->interval_s;
  return 0;
}

/* The first PI after a fault closes it: downtime, and what the fault
 * cost at the new cluster's price (the downtime plus the lost work, which
 * is redone). */
static void run_loss_check_done(run_ctx *c) {
  if (!c->nloss) return;
  run_loss *x = &c->loss[c->nloss - 1];
  if (x->done_flag || x->to_launch <= 0 || x->to_launch >= c->nl) return;
  const run_launch *N = &c->launches[x->to_launch];
  double first = run_first_pi_s(N, NULL);
  if (!first) return;
  double price = 0, pi_s = run_recent_pi_s(c);
  for (size_t h = 0; h < N->nhosts; h++) price += c->nodes[N->host[h]].pn.price_usd_per_hour;
  uint64_t lost = x->done > x->ck_next ? x->done - x->ck_next : 0;
  x->first_pi_s = first;
  x->downtime_s = first - x->last_pi_s;
  x->cost_usd = price / 3600.0 * (x->downtime_s + (double)lost * pi_s);
  x->done_flag = 1;
  json_object *o = run_jrec("node_lost_recovered");
  json_object_object_add(o, "launch", json_object_new_int(c->launch_base + x->to_launch));
  json_object_object_add(o, "downtime_s", json_object_new_double(x->downtime_s));
  json_object_object_add(o, "iterations_lost", json_object_new_int64((int64_t)lost));
  json_object_object_add(o, "cost_usd", json_object_new_double(x->cost_usd));
  run_jput(c, o, 1);
}

/* ---- status ----------------------------------------------------------- */

static void run_status(run_ctx *c, double now, int force) {
  double every = c->tty ? RUN_STATUS_TTY_S : RUN_STATUS_LOG_S;
  if (!force && now - c->last_status_s < every) return;
  c->last_status_s = now;
  run_launch *L = run_cur(c);
  char comp[256] = "-", pis[256] = "", eta[32] = "?", total[32] = "?";
  if (L) run_composition(c, L->host, L->nhosts, comp, sizeof comp);
  uint64_t epoch = 0;
  const char *phase = "";
  for (int l = 0; l < c->nl; l++) {
    const intake_rank *k = intake_rank_find(c->launches[l].in, 0);
    if (k && k->n_epochs && k->epochs[k->n_epochs - 1].epoch + 1 > epoch)
      epoch = k->epochs[k->n_epochs - 1].epoch + 1;
    if (k && k->n_phases && l == c->nl - 1) phase = k->phases[k->n_phases - 1].name;
  }
  double spent = 0;
  for (size_t i = 0; i < c->nn; i++) spent += provider_node_cost_usd(&c->nodes[i].pn, now);
  if (c->have_last) {
    const policy_decision_t *d = &c->last;
    size_t off = 0;
    for (size_t i = 0; i < d->estimates.n && off < sizeof pis; i++) {
      const policy_estimate_t *e = &d->estimates.est[i];
      if (strcmp(e->phase, phase)) continue;
      double per_rank = c->cfg->scaling == RUN_SCALING_RANK_BATCH
                            ? c->batch
                            : c->batch / (double)(L ? L->nhosts : 1);
      off += (size_t)snprintf(pis + off, sizeof pis - off, " %s=%.3fs%s", e->type,
                              e->s_per_sample * per_rank, e->settled ? "" : "?");
    }
    const policy_prediction_t *p =
        c->state != RUN_RUNNING && d->has_target ? &d->target : &d->stay;
    if (p->end_s > 0) {
      snprintf(eta, sizeof eta, "%.0fs", p->end_s - now > 0 ? p->end_s - now : 0);
      snprintf(total, sizeof total, "$%.5f", p->total_usd);
    }
  }
  char line[768];
  snprintf(line, sizeof line,
           "iter %llu/%llu epoch %llu %s%s [%s] %s PI:%s ETA %s cost $%.5f -> %s",
           (unsigned long long)c->done_iters, (unsigned long long)c->total_iters,
           (unsigned long long)epoch, phase[0] ? "phase " : "", phase,
           run_state_names[c->state], comp, pis[0] ? pis : " -", eta, spent, total);
  if (c->tty) {
    fprintf(stderr, "\r\033[K%.*s", 200, line);
    fflush(stderr);
    c->status_shown = 1;
  } else {
    log_info("run: %s", line);
  }
}

/* ---- the report -------------------------------------------------------- */

static double run_cost_total(run_ctx *c, double now) {
  double s = 0;
  for (size_t i = 0; i < c->nn; i++) s += provider_node_cost_usd(&c->nodes[i].pn, now);
  return s;
}

static void run_report(run_ctx *c, int exit_status, run_result *res) {
  double now = clock_real_s();
  for (size_t i = 0; i < c->nn; i++) c->p->ops->alive(c->p, c->nodes[i].pn.id, &c->nodes[i].pn);
  double end = c->end_s > 0 ? c->end_s : now;
  double total_s = end - c->t0, cost = run_cost_total(c, now);
  res->total_s = total_s;
  res->cost_usd = cost;
  res->launches = c->nl;
  int done = 0;
  for (int s = 0; s < c->nsw; s++) done += c->sw[s].done;
  res->switches = done;

  /* Final per-type estimates over everything measured, for the summary;
   * the report recomputes its own from the journal. */
  static run_input ri;
  static policy_estimates_t est;
  int have_est = run_input_build(c, end, &ri) == 0 && policy_estimate(&ri.in, &c->pcfg, &est) == 0;

  /* metrics.csv, report.json and report.html come from the journal alone
   * (docs/report.md), which run_end has just been synced into. */
  char err[512] = "";
  const char *warn = NULL;
  report_opts ro = {.warn = &warn};
  int reported = report_build(c->run_dir, &ro, err, sizeof err) == 0;
  if (!reported) run_say(c, LOG_WARN, "run: report: %s", err);
  else if (warn) run_say(c, LOG_WARN, "run: report: %s", warn);
  if (reported) {
    /* The journal's figures span every controller of the run (resume)
     * and bill as the provider does: prefer them. */
    char rp[PATH_MAX + 32];
    snprintf(rp, sizeof rp, "%s/report.json", c->run_dir);
    json_object *r = json_object_from_file(rp), *v;
    if (r && json_object_object_get_ex(r, "duration_s", &v) && json_object_is_type(v, json_type_double))
      total_s = res->total_s = json_object_get_double(v);
    if (r && json_object_object_get_ex(r, "cost_usd", &v) && json_object_is_type(v, json_type_double))
      cost = res->cost_usd = json_object_get_double(v);
    json_object_put(r);
  }

  /* The summary on the terminal. */
  run_status_clear(c);
  FILE *f = c->out;
  char first[256] = "-", last[256] = "-";
  if (c->nl) {
    run_composition(c, c->launches[0].host, c->launches[0].nhosts, first, sizeof first);
    run_launch *L = run_cur(c);
    run_composition(c, L->host, L->nhosts, last, sizeof last);
  }
  fprintf(f, "run: %s\n", c->run_dir);
  fprintf(f, "job: %s after %llu iterations in %.1f s; %d launch%s, %d switch%s; cost $%.6f "
             "(%zu node%s)\n",
          exit_status == 0 ? "done" : "FAILED", (unsigned long long)c->done_iters, total_s, c->nl,
          c->nl == 1 ? "" : "es", done, done == 1 ? "" : "es", cost, c->nn, c->nn == 1 ? "" : "s");
  fprintf(f, "cluster: %s -> %s (policy %s, objective %s)\n", first, last, c->cfg->policy_name,
          c->cfg->objective);
  for (int s = 0; s < c->nsw; s++) {
    const run_switch *w = &c->sw[s];
    if (!w->done) {
      fprintf(f, "switch %d at %.1f s: %s -> %s: not completed\n", s + 1, w->decide_s - c->t0,
              w->from, w->to);
      continue;
    }
    fprintf(f,
            "switch %d at %.1f s: %s -> %s: setup %.2f s while training; downtime %.2f s = "
            "checkpoint %.2f + restart %.2f + re-init %.2f\n",
            s + 1, w->decide_s - c->t0, w->from, w->to, w->ready_s - w->decide_s,
            w->first_pi_s - w->stop_req_s, w->ckpt_s - w->stop_req_s, w->init_begin_s - w->exit_s,
            w->first_pi_s - w->init_begin_s);
  }
  for (int k = 0; k < c->nloss; k++) {
    const run_loss *x = &c->loss[k];
    uint64_t lost = x->done > x->ck_next ? x->done - x->ck_next : 0;
    fprintf(f, "fault %d at %.1f s: %s; %llu iteration%s lost (%llu done, resumed at %llu%s); "
               "replacement: %s",
            k + 1, x->t_s - c->t0, x->what, (unsigned long long)lost, lost == 1 ? "" : "s",
            (unsigned long long)x->done, (unsigned long long)x->ck_next,
            x->ck_next ? " from the last checkpoint" : ", no checkpoint yet", x->replacement);
    if (x->done_flag)
      fprintf(f, "; downtime %.2f s; cost $%.6f\n", x->downtime_s, x->cost_usd);
    else
      fprintf(f, "; not recovered\n");
  }
  if (have_est) {
    fprintf(f, "steady compute time per PI (per rank, at the cluster size measured):\n");
    for (size_t i = 0; i < est.n; i++) {
      const policy_estimate_t *e = &est.est[i];
      double per_rank = ri.in.scaling == POLICY_SCALE_RANK_BATCH
                            ? ri.in.batch
                            : ri.in.batch / (e->nodes ? e->nodes : 1);
      fprintf(f, "  %-14s %-10s %8.4f s  (%d nodes, %zu PIs used, %zu warm-up, %s)\n", e->type,
              e->phase[0] ? e->phase : "-", e->s_per_sample * per_rank, e->nodes, e->n_used,
              e->warmup_pis, e->steady ? "steady" : e->settled ? "settled" : "not settled");
    }
  }
  run_input_free(&ri);
  /* Decisions: every action, and the waits/stays around them, thinned. */
  size_t shown = 0, step = c->ndec > 12 ? c->ndec / 12 : 1;
  fprintf(f, "decisions (remaining time: predicted vs actual):\n");
  for (size_t i = 0; i < c->ndec; i++) {
    const run_decision_rec *d = &c->dec[i];
    int acts = d->action == POLICY_SWITCH || d->action == POLICY_PROBE;
    if (!acts && i % step && i + 1 != c->ndec) continue;
    char pred[32] = "-", act[32] = "-";
    if (isfinite(d->predicted_s)) snprintf(pred, sizeof pred, "%.1f s", d->predicted_s);
    if (exit_status == 0) snprintf(act, sizeof act, "%.1f s", end - d->t_s);
    fprintf(f, "  t=%6.1f s  %-6s predicted %-9s actual %-9s %s%s%s\n", d->t_s - c->t0,
            policy_action_name(d->action), pred, act, d->reason ? d->reason : "",
            d->change[0] ? ": " : "", d->change);
    shown++;
  }
  if (!shown) fprintf(f, "  (none: the job ended before the first decision)\n");
  if (reported)
    fprintf(f, "report: %s/report.html (and report.json, metrics.csv)\n", c->run_dir);
  fflush(f);
}

/* ---- the loop ---------------------------------------------------------- */

/* The current launch exited; what now?  Returns 1 when the run is over. */
static int run_on_exit(run_ctx *c, int *exit_status) {
  run_launch *L = run_cur(c);
  run_launch_reap(L);
  json_object *o = run_jrec("job_exit");
  json_object_object_add(o, "launch", json_object_new_int(c->launch_base + c->nl - 1));
  json_object_object_add(o, "status", json_object_new_int(L->status));
  run_jput(c, o, 1);
  if (L->status != 0 && !run_signal) {
    /* A node gone under the job is a fault to carry on past; so is a crash
     * on live nodes once a checkpoint exists (a few times: a job that
     * keeps failing is the job's fault). */
    size_t lost[RUN_CONFIG_NODES_MAX];
    char cause[512];
    size_t nlost = run_members_lost(c, lost, RUN_CONFIG_NODES_MAX, 0, cause, sizeof cause);
    if (!nlost) {
      /* mpirun may notice a node's processes killed before the node's
       * removal is complete: look again a moment later. */
      struct timespec ts = {1, 0};
      nanosleep(&ts, NULL);
      nlost = run_members_lost(c, lost, RUN_CONFIG_NODES_MAX, 0, cause, sizeof cause);
    }
    run_ckpt_refresh(c);
    if (nlost || (c->have_ck && c->retries < RUN_RETRIES_MAX)) {
      char why[600];
      snprintf(why, sizeof why, "job crashed (status %d)%s%s", L->status, nlost ? ": " : "",
               cause);
      if (!nlost) c->retries++;
      if (run_recover(c, lost, nlost, why)) {
        *exit_status = 1;
        return 1;
      }
      return 0;
    }
  }
  if (L->status != 0) {
    run_say(c, LOG_ERR, "run: the job failed with status %d (log: %s)", L->status, L->log);
    *exit_status = L->status;
    return 1;
  }
  if (c->state == RUN_STOPPING) {
    const intake_checkpoint *ck = run_checkpoint_after(L, L->stop_req_s);
    if (ck) {
      json_object *k = run_jrec("switch_checkpoint");
      json_object_object_add(k, "path", json_object_new_string(ck->path));
      json_object_object_add(k, "iter", json_object_new_int64((int64_t)ck->iter));
      run_jput(c, k, 0);
      if (run_switch_relaunch(c, ck)) {
        *exit_status = 1;
        return 1;
      }
      return 0;
    }
    run_phases(c, (run_phase_info[POLICY_MAX_PHASES]){0}, POLICY_MAX_PHASES);
    if (!c->total_iters || c->done_iters < c->total_iters) {
      run_say(c, LOG_ERR, "run: the job stopped without reporting a checkpoint (log: %s)", L->log);
      *exit_status = 1;
      return 1;
    }
    /* It reached its end before the agreed stop: nothing to move. */
  }
  *exit_status = 0;
  return 1;
}

static int run_loop(run_ctx *c) {
  int exit_status = 0;
  for (;;) {
    run_launch *L = run_cur(c);
    int r = intake_run_until(L->in, L->pidfd, RUN_POLL_MS);
    if (r < 0) {
      run_say(c, LOG_ERR, "run: intake loop failed: %s", pm_strerror(r));
      return 1;
    }
    if (run_signal) return 128 + run_signal;
    double now = clock_real_s();
    if (r == 1) {
      if (run_on_exit(c, &exit_status)) {
        c->end_s = run_cur(c)->exit_s;
        return exit_status;
      }
      continue;
    }
    run_phases(c, (run_phase_info[POLICY_MAX_PHASES]){0}, POLICY_MAX_PHASES);
    run_switch_check_done(c);
    run_loss_check_done(c);
    if (now >= c->next_health_s) {
      c->next_health_s = now + RUN_HEALTH_S;
      size_t lost[RUN_CONFIG_NODES_MAX];
      char cause[512];
      size_t nlost = run_members_lost(c, lost, RUN_CONFIG_NODES_MAX, 1, cause, sizeof cause);
      if (nlost) {
        if (run_recover(c, lost, nlost, cause)) return run_signal ? 128 + run_signal : 1;
        continue;
      }
    }
    if (c->state == RUN_RUNNING && now >= c->next_decide_s) {
      c->next_decide_s = now + c->cfg->interval_s;
      run_decide(c, now);
    }
    if (c->state == RUN_SETUP) {
      int ready = 0;
      if (run_nodes_setup(c, 1, &ready)) {
        /* The switch is off; the job goes on where it is. */
        for (size_t i = 0; i < c->nn; i++) {
          if (c->nodes[i].incoming) run_node_stop(c, &c->nodes[i]);
          c->nodes[i].incoming = c->nodes[i].leaving = 0;
        }
        c->nsw--;
        c->state = RUN_RUNNING;
        c->next_decide_s = now + 3 * c->cfg->interval_s;
      } else if (ready) {
        run_switch *s = &c->sw[c->nsw - 1];
        s->ready_s = now;
        s->stop_req_s = now;
        L->stop_req_s = now;
        /* As soon as the ranks agree: burn-style apps stop at the
         * iteration under way + 1, so no iteration is lost or redone. */
        intake_request_stop(L->in, UINT64_MAX);
        c->state = RUN_STOPPING;
        run_say(c, LOG_INFO, "run: new nodes ready after %.2f s; stop requested at iteration %llu",
                now - s->decide_s, (unsigned long long)c->done_iters);
      }
    }
    if (c->state == RUN_STOPPING && now - L->stop_req_s > c->cfg->stop_timeout_s) {
      run_say(c, LOG_ERR, "run: the job did not stop within job.stop_timeout_s = %g s",
              c->cfg->stop_timeout_s);
      return 1;
    }
    run_status(c, now, 0);
  }
}

static int run_policy_cfg(run_ctx *c) {
  policy_cfg_default(&c->pcfg);
  if (policy_kind_from_name(c->cfg->policy_name, &c->pcfg.kind) ||
      policy_objective_from_name(c->cfg->objective, &c->pcfg.objective))
    return PM_EINVAL;
  c->pcfg.deadline_s = c->cfg->deadline_s > 0 ? c->t0 + c->cfg->deadline_s : 0;
  c->pcfg.budget_usd = c->cfg->budget_usd;
  c->pcfg.min_nodes = c->cfg->min_nodes;
  c->pcfg.max_nodes = c->cfg->max_nodes;
  c->pcfg.margin_rel = c->cfg->margin;
  c->pcfg.early_pis = (int)c->cfg->early_pis;
  c->pcfg.early_margin_rel = c->cfg->early_margin;
  c->pcfg.steady.confidence = c->cfg->confidence;
  c->pcfg.clapbot_period_s = c->cfg->interval_s;
  return 0;
}

/* ---- a run's past, for resume ------------------------------------------ */

/* What the journal says about a run another controller left. */
typedef struct {
  int started, ended, end_status, launches;
  double t0;
  char config[PATH_MAX];
  int have_ck;
  intake_checkpoint ck;
  uint64_t done;
  size_t nids;
  char ids[RUN_NODES_MAX][PROVIDER_ID_MAX];
  char types[RUN_NODES_MAX][CATALOG_NAME_MAX];
  size_t nhosts; /* of the last launch */
  char host_type[RUN_CONFIG_NODES_MAX][CATALOG_NAME_MAX];
} run_past;

static const char *run_jget_str(json_object *rec, const char *k) {
  json_object *v;
  return json_object_object_get_ex(rec, k, &v) && json_object_is_type(v, json_type_string)
             ? json_object_get_string(v) : NULL;
}

static int run_jget_u64(json_object *rec, const char *k, uint64_t *out) {
  json_object *v;
  if (!json_object_object_get_ex(rec, k, &v) || !json_object_is_type(v, json_type_int))
    return 0;
  int64_t x = json_object_get_int64(v);
  if (x < 0) return 0;
  *out = (uint64_t)x;
  return 1;
}

static int run_past_cb(json_object *rec, void *ud) {
  run_past *p = ud;
  const char *ev = run_jget_str(rec, "ev");
  json_object *v;
  double t = json_object_object_get_ex(rec, "t", &v) ? json_object_get_double(v) : 0;
  uint64_t u = 0;
  if (!strcmp(ev, "run_start")) {
    const char *cf = run_jget_str(rec, "config");
    p->started = 1;
    p->t0 = t;
    snprintf(p->config, sizeof p->config, "%s", cf ? cf : "");
  } else if (!strcmp(ev, "resume")) {
    p->ended = 0;
  } else if (!strcmp(ev, "run_end")) {
    p->ended = 1;
    p->end_status = run_jget_u64(rec, "status", &u) ? (int)u : 1;
  } else if (!strcmp(ev, "checkpoint") && json_object_object_get_ex(rec, "rank", NULL)) {
    const char *path = run_jget_str(rec, "path");
    if (path && run_jget_u64(rec, "iter", &u) && (!p->have_ck || u > p->ck.iter)) {
      p->have_ck = 1;
      p->ck.iter = u;
      snprintf(p->ck.path, sizeof p->ck.path, "%s", path);
      run_jget_u64(rec, "t_ns", &p->ck.t_ns);
    }
  } else if (!strcmp(ev, "pi")) {
    if (run_jget_u64(rec, "iter", &u) && u + 1 > p->done) p->done = u + 1;
  } else if (!strcmp(ev, "node_request")) {
    const char *id = run_jget_str(rec, "node"), *type = run_jget_str(rec, "type");
    if (id && type && p->nids < RUN_NODES_MAX) {
      snprintf(p->ids[p->nids], sizeof p->ids[0], "%s", id);
      snprintf(p->types[p->nids++], sizeof p->types[0], "%s", type);
    }
  } else if (!strcmp(ev, "launch") || !strcmp(ev, "relaunch")) {
    p->launches++;
    json_object *hosts;
    if (json_object_object_get_ex(rec, "hosts", &hosts) &&
        json_object_is_type(hosts, json_type_array)) {
      p->nhosts = 0;
      for (size_t i = 0; i < json_object_array_length(hosts) && p->nhosts < RUN_CONFIG_NODES_MAX;
           i++) {
        const char *id = json_object_get_string(json_object_array_get_idx(hosts, i));
        for (size_t k = 0; id && k < p->nids; k++)
          if (!strcmp(p->ids[k], id)) {
            memcpy(p->host_type[p->nhosts++], p->types[k], sizeof p->host_type[0]);
            break;
          }
      }
    }
  }
  return 0;
}

static int run_past_read(const char *run_dir, run_past *p, char *err, size_t cap) {
  memset(p, 0, sizeof *p);
  long bad = 0;
  const char *warn = NULL;
  int rc = journal_read(run_dir, run_past_cb, p, &bad, &warn);
  if (rc == PM_ENOENT) {
    snprintf(err, cap, "%s/journal.jsonl: no such file (is %s a run directory?)", run_dir, run_dir);
    return rc;
  }
  if (rc) {
    snprintf(err, cap, "%s/journal.jsonl line %ld: %s", run_dir, bad, pm_strerror(rc));
    return rc;
  }
  if (warn) log_warn("run: %s/journal.jsonl: %s", run_dir, warn);
  if (!p->started) {
    snprintf(err, cap, "%s: no run_start in its journal: not a run of `paramount run`", run_dir);
    return PM_EPARSE;
  }
  return 0;
}

/* One controller per run directory: an exclusive lock on RUN/controller.lock,
 * which dies with its holder (SIGKILL included), holding its pid. */
static int run_lock(run_ctx *c) {
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/controller.lock", c->run_dir);
  c->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (c->lock_fd < 0) {
    log_err("run: cannot open %s: %s", path, strerror(errno));
    return PM_ESYS;
  }
  if (flock(c->lock_fd, LOCK_EX | LOCK_NB)) {
    char pid[32] = "?";
    ssize_t n = pread(c->lock_fd, pid, sizeof pid - 1, 0);
    pid[n > 0 ? n : 1] = '\0';
    pid[strcspn(pid, "\n")] = '\0';
    log_err("run: %s is being run by another paramount (pid %s); stop it first", c->run_dir, pid);
    return PM_ESTATE;
  }
  char pid[32];
  int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
  if (ftruncate(c->lock_fd, 0) || pwrite(c->lock_fd, pid, (size_t)n, 0) != n)
    log_warn("run: cannot write %s", path);
  return 0;
}

static int run_copy_file(const char *from, const char *dir, const char *name) {
  char *text = NULL, to[PATH_MAX + 64];
  size_t len = 0;
  int rc = util_read_file(from, RUN_CONFIG_MAX_BYTES, &text, &len);
  if (rc) return rc;
  snprintf(to, sizeof to, "%s/%s", dir, name);
  rc = util_write_file_atomic(to, text, len);
  free(text);
  return rc;
}

static void run_count_down(const char *id, const char *what, void *ud) {
  (*(int *)ud)++;
  log_info("run: resume: %s %s", id, what);
}

int run_config_of(const char *run_dir, run_config *cfg, char *err, size_t cap) {
  static run_past past;
  int rc = run_past_read(run_dir, &past, err, cap);
  if (rc) return rc;
  char path[PATH_MAX + 32], *text = NULL;
  size_t len = 0;
  snprintf(path, sizeof path, "%s/config.yaml", run_dir);
  if ((rc = util_read_file(path, RUN_CONFIG_MAX_BYTES, &text, &len))) {
    snprintf(err, cap, "%s: cannot read the run's config copy: %s", path, pm_strerror(rc));
    return rc;
  }
  /* Relative paths (stage files) stay anchored where the original was. */
  rc = run_config_parse(past.config[0] ? past.config : path, text, len, cfg, err, cap);
  free(text);
  if (rc) return rc;
  snprintf(path, sizeof path, "%s/catalog.yaml", run_dir);
  if (!access(path, R_OK) && strlen(path) < sizeof cfg->catalog)
    memcpy(cfg->catalog, path, strlen(path) + 1);
  return 0;
}

int run_execute(const run_opts *o, run_result *res) {
  memset(res, 0, sizeof *res);
  res->exit_status = 1;
  if (!o || !o->cfg) return PM_EINVAL;
  const run_config *cfg = o->cfg;
  if (!cfg->has_job || !cfg->ncommand) {
    log_err("run: %s: field 'job.command': missing (run needs a job)", cfg->path);
    res->exit_status = 2;
    return PM_EINVAL;
  }
  run_ctx *c = calloc(1, sizeof *c);
  if (!c) return PM_ENOMEM;
  c->dec = calloc(RUN_DECISIONS_MAX, sizeof *c->dec);
  if (!c->dec) {
    free(c);
    return PM_ENOMEM;
  }
  c->o = o;
  c->cfg = cfg;
  c->lock_fd = -1;
  c->out = o->out ? o->out : stdout;
  c->tty = o->status_tty < 0 ? isatty(2) : o->status_tty;
  c->can_resume = cfg->nresume > 0;
  int rc = 0;
  char err[2048] = "";
  char catpath[PATH_MAX];
  snprintf(catpath, sizeof catpath, "%s", cfg->catalog);
  if (!catpath[0] && catalog_default_path(catpath, sizeof catpath)) {
    log_err("run: no catalog: set 'catalog' in %s or PARAMOUNT_CATALOG (looked for %s)",
            cfg->path, catpath);
    res->exit_status = 2;
    rc = PM_ENOENT;
    goto done_ctx;
  }
  if ((rc = catalog_load(catpath, &c->cat, err, sizeof err)) ||
      (rc = run_config_check_catalog(cfg, c->cat, err, sizeof err))) {
    log_err("run: %s", err);
    res->exit_status = 2;
    goto done_cat;
  }
  static run_past past;
  memset(&past, 0, sizeof past);
  if (o->resume) {
    if (!o->out_dir || !realpath(o->out_dir, c->run_dir)) {
      log_err("run: resume: %s: no such run directory", o->out_dir ? o->out_dir : "(none)");
      rc = PM_ENOENT;
      goto done_cat;
    }
  } else if ((rc = util_run_dir_create(o->out_dir, c->run_dir, sizeof c->run_dir))) {
    log_err("run: cannot create run directory %s: %s", o->out_dir ? o->out_dir : "under runs/",
            rc == PM_EEXIST ? "it already holds a run" : pm_strerror(rc));
    goto done_cat;
  }
  snprintf(res->run_dir, sizeof res->run_dir, "%s", c->run_dir);
  if ((rc = run_lock(c))) goto done_cat;
  if (o->resume) {
    if ((rc = run_past_read(c->run_dir, &past, err, sizeof err))) {
      log_err("run: resume: %s", err);
      goto done_cat;
    }
    if (past.ended && past.end_status == 0) {
      log_err("run: resume: %s completed already (its run_end has status 0)", c->run_dir);
      rc = PM_ESTATE;
      goto done_cat;
    }
  }
  if ((rc = util_token_generate(c->token)) || (rc = journal_open(c->run_dir, &c->j))) {
    log_err("run: cannot start the run in %s: %s", c->run_dir, pm_strerror(rc));
    goto done_cat;
  }
  c->t0 = o->resume && past.t0 > 0 ? past.t0 : clock_real_s();
  c->launch_base = past.launches;
  if ((rc = run_policy_cfg(c))) goto done_journal;
  if (!o->resume) {
    /* resume needs nothing but the run directory: keep the config and the
     * catalog it was started with. */
    if (run_copy_file(cfg->path, c->run_dir, "config.yaml") ||
        run_copy_file(catpath, c->run_dir, "catalog.yaml"))
      log_warn("run: cannot copy the config and catalog into %s: `paramount resume` will "
               "not work for this run", c->run_dir);
    json_object *jo = run_jrec("run_start");
    json_object_object_add(jo, "config", json_object_new_string(cfg->path));
    json_object_object_add(jo, "catalog", json_object_new_string(catpath));
    json_object_object_add(jo, "provider", json_object_new_string(cfg->provider));
    json_object_object_add(jo, "policy", json_object_new_string(cfg->policy_name));
    json_object_object_add(jo, "objective", json_object_new_string(cfg->objective));
    json_object_object_add(jo, "pid", json_object_new_int((int)getpid()));
    run_jput(c, jo, 1);
  }
  if (!c->can_resume && strcmp(cfg->policy_name, "static"))
    log_warn("run: %s: job.resume is not set, so the job cannot be moved: the cluster stays "
             "as it starts", cfg->path);

  int nterm = 0;
  if (o->resume) {
    /* Nodes a dead controller left are not reused: what ran on them is
     * unknown.  Terminate them (journaled) before anything new starts. */
    if (provider_local_down(c->run_dir, run_count_down, &nterm, err, sizeof err))
      log_warn("run: resume: terminating leftover nodes: %s", err);
    /* The journal is ours, but a path in it will be handed to the job:
     * hold it to the same root the intake held it to. */
    char why[PATH_MAX + 128];
    if (past.have_ck && intake_checkpoint_path_check(past.ck.path,
                                                     run_checkpoint_root(cfg, c->run_dir),
                                                     why, sizeof why)) {
      log_warn("run: resume: the journal's last checkpoint is not used: %s", why);
      past.have_ck = 0;
    }
    c->have_ck = past.have_ck;
    c->ck = past.ck;
    c->done_floor = past.have_ck ? past.ck.iter + 1 : 0;
    json_object *jo = run_jrec("resume");
    json_object_object_add(jo, "pid", json_object_new_int((int)getpid()));
    json_object_object_add(jo, "nodes_terminated", json_object_new_int(nterm));
    json_object_object_add(jo, "iterations_done", json_object_new_int64((int64_t)past.done));
    if (past.have_ck) {
      json_object_object_add(jo, "checkpoint", json_object_new_string(past.ck.path));
      json_object_object_add(jo, "checkpoint_next_iter",
                             json_object_new_int64((int64_t)past.ck.iter + 1));
    }
    run_jput(c, jo, 1);
  }

  provider_opts po = {.run_dir = c->run_dir, .cat = c->cat, .paramount_bin = o->paramount_bin,
                      .force = o->force || cfg->force};
  if ((rc = provider_open(cfg->provider, &po, &c->p, err, sizeof err))) {
    log_err("run: %s", err);
    goto done_journal;
  }
  if ((rc = c->p->ops->mpi_agent(c->p, c->agent, sizeof c->agent))) {
    log_err("run: %s", c->p->err);
    goto done_provider;
  }
  struct sigaction sa, old_int, old_term;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = run_on_signal;
  sigemptyset(&sa.sa_mask);
  run_signal = 0;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);

  fprintf(c->out, "run: %s\n", c->run_dir);
  if (o->resume)
    fprintf(c->out, "resume: %d leftover node%s terminated; %llu iterations done, %s\n", nterm,
            nterm == 1 ? "" : "s", (unsigned long long)past.done,
            past.have_ck ? "continuing from the last checkpoint" : "no checkpoint: from the start");
  if (o->resume && past.have_ck)
    fprintf(c->out, "resume: checkpoint %s holds iterations 0..%llu\n", past.ck.path,
            (unsigned long long)past.ck.iter);
  fflush(c->out);
  int status = 1;
  /* Provision: every node boots in the background at once.  A resumed run
   * starts the cluster its last launch ran on. */
  if (o->resume && past.nhosts) {
    for (size_t h = 0; h < past.nhosts; h++)
      if (run_nodes_start(c, past.host_type[h], 1, 0)) goto fail;
  } else {
    for (size_t g = 0; g < cfg->ngroups; g++)
      if (run_nodes_start(c, cfg->groups[g].type, cfg->groups[g].count, 0)) goto fail;
  }
  for (size_t i = 0; i < c->nn; i++) c->nodes[i].member = 1;
  for (;;) {
    int ready = 0;
    if (run_nodes_setup(c, 0, &ready)) goto fail;
    if (ready) break;
    if (run_signal) {
      status = 128 + run_signal;
      goto fail;
    }
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  run_launch *L0 = &c->launches[0];
  L0->pidfd = -1;
  for (size_t i = 0; i < c->nn; i++) L0->host[L0->nhosts++] = i;
  if (run_launch_start(c, L0, c->have_ck ? c->ck.path : NULL)) goto fail;
  c->next_decide_s = clock_real_s() + cfg->interval_s;
  status = run_loop(c);
  goto finish;
fail:
  if (run_signal) status = 128 + run_signal;
finish:
  run_status_clear(c);
  if (c->nl) {
    run_launch *L = run_cur(c);
    if (!L->exited) {
      run_say(c, LOG_INFO, "run: stopping the job");
      run_launch_kill(L);
      if (!c->end_s) c->end_s = clock_real_s();
    }
  }
  if (!c->end_s) c->end_s = clock_real_s();
  run_nodes_stop_all(c);
  if (run_signal)
    run_say(c, LOG_ERR, "run: interrupted by signal %d; every node is terminated", (int)run_signal);
  json_object *je = run_jrec("run_end");
  json_object_object_add(je, "status", json_object_new_int(status));
  run_jput(c, je, 1);
  run_report(c, status, res);
  res->exit_status = status;
  rc = status == 0 ? 0 : run_signal ? PM_EAGAIN : PM_ECHILD;
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  for (int l = 0; l < c->nl; l++) intake_close(c->launches[l].in);
done_provider:
  provider_close(c->p);
done_journal:
  journal_close(c->j);
done_cat:
  catalog_free(c->cat);
  if (c->lock_fd >= 0) close(c->lock_fd);
done_ctx:
  free(c->dec);
  free(c);
  return rc;
}
