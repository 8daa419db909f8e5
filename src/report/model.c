/* model.c - folds a run's journal into the report's run model.
 *
 * Tolerant of events it does not know (other parts of Paramount add
 * events over time; a report must not break on them) but strict about the
 * ones it uses: a known event with a missing or mistyped field is an error
 * naming its line, because a report built on a silently skipped record
 * would lie.  The run's timeline is the controller's clock (every
 * record's "t"); ranks' own clocks only place their events, and a rank
 * whose clock is off is moved onto the controller's and named in a
 * warning.  See docs/report.md for the events and how they are used.
 */
#include "report/model.h"

#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/journal.h"
#include "paramount.h"
#include "policy/policy.h"

/* ---- growth ------------------------------------------------------------ */

static int model_grow(void **p, size_t *cap, size_t n, size_t elem) {
  if (n < *cap) return 0;
  size_t nc = *cap ? *cap * 2 : 16;
  void *q = realloc(*p, nc * elem);
  if (!q) return PM_ENOMEM;
  *p = q;
  *cap = nc;
  return 0;
}
#define MODEL_DECLS_MAX 1024 /* phases kept per rank, as the intake does */
#define GROW(arr, n, cap) model_grow((void **)&(arr), &(cap), (n), sizeof *(arr))

/* ---- reading fields ---------------------------------------------------- */

typedef struct {
  model_run *m;
  long line;
  int cur_launch;
  int pending_fault; /* a node_lost whose recovery launch is still to come, -1 */
  double last_t_s;
  char *err;
  size_t cap;
} model_reader;

static int model_fail(model_reader *r, const char *ev, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int model_fail(model_reader *r, const char *ev, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(r->err, r->cap, "journal line %ld: \"%s\" event: %s", r->line, ev, msg);
  return PM_EPARSE;
}

/* A finite number (int or double).  Absent: *out = NaN and 0 when
 * optional; a present field of another type is always an error. */
static int model_num(model_reader *r, json_object *rec, const char *ev,
                     const char *key, int required, double *out) {
  json_object *v;
  *out = NAN;
  if (!json_object_object_get_ex(rec, key, &v) || !v) {
    if (!required) return 0;
    return model_fail(r, ev, "field \"%s\" is missing", key);
  }
  if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
    return model_fail(r, ev, "field \"%s\" is not a number", key);
  double d = json_object_get_double(v);
  if (!isfinite(d)) return model_fail(r, ev, "field \"%s\" is not finite", key);
  *out = d;
  return 0;
}

/* A non-negative integer up to max. */
static int model_uint(model_reader *r, json_object *rec, const char *ev,
                      const char *key, uint64_t max, uint64_t *out) {
  json_object *v;
  if (!json_object_object_get_ex(rec, key, &v) || !v)
    return model_fail(r, ev, "field \"%s\" is missing", key);
  if (!json_object_is_type(v, json_type_int))
    return model_fail(r, ev, "field \"%s\" is not an integer", key);
  if (json_object_get_int64(v) < 0)
    return model_fail(r, ev, "field \"%s\" is negative", key);
  uint64_t u = json_object_get_uint64(v);
  if (u > max) return model_fail(r, ev, "field \"%s\" is out of range (%llu)", key,
                                 (unsigned long long)u);
  *out = u;
  return 0;
}

static int model_str(model_reader *r, json_object *rec, const char *ev,
                     const char *key, int required, char *out, size_t cap) {
  json_object *v;
  out[0] = '\0';
  if (!json_object_object_get_ex(rec, key, &v) || !v) {
    if (!required) return 0;
    return model_fail(r, ev, "field \"%s\" is missing", key);
  }
  if (!json_object_is_type(v, json_type_string))
    return model_fail(r, ev, "field \"%s\" is not a string", key);
  const char *s = json_object_get_string(v);
  if (strlen(s) >= cap)
    return model_fail(r, ev, "field \"%s\" is longer than %zu bytes", key, cap - 1);
  memcpy(out, s, strlen(s) + 1);
  return 0;
}

/* ---- lookups ------------------------------------------------------------ */

static int model_node_find(model_run *m, const char *id, int create) {
  for (size_t i = 0; i < m->n_nodes; i++)
    if (!strcmp(m->nodes[i].id, id)) return (int)i;
  if (!create) return -1;
  if (GROW(m->nodes, m->n_nodes, m->cap_nodes)) return PM_ENOMEM;
  model_node *n = &m->nodes[m->n_nodes];
  memset(n, 0, sizeof *n);
  snprintf(n->id, sizeof n->id, "%s", id);
  n->requested_s = n->booted_s = n->staged_s = n->ready_s = n->terminated_s = NAN;
  n->first_seen_s = n->last_seen_s = NAN;
  return (int)m->n_nodes++;
}

static int model_rank_find(model_run *m, int launch, unsigned rank, int create) {
  for (size_t i = m->n_ranks; i-- > 0;)
    if (m->ranks[i].launch == launch && m->ranks[i].rank == rank) return (int)i;
  if (!create) return -1;
  if (GROW(m->ranks, m->n_ranks, m->cap_ranks)) return PM_ENOMEM;
  model_rank *k = &m->ranks[m->n_ranks];
  memset(k, 0, sizeof *k);
  k->launch = launch;
  k->rank = rank;
  k->node = -1;
  k->init_begin_s = k->init_end_s = k->first_pi_begin_s = NAN;
  k->clock_min_s = k->clock_max_s = k->clock_lead_s = NAN;
  return (int)m->n_ranks++;
}

/* The phase of a rank's PI at iteration iter (model_rank.decls); -1
 * before any declared phase. */
static int model_phase_of(const model_rank *k, uint64_t iter) {
  int best = -1;
  uint64_t best_first = 0;
  for (size_t i = 0; i < k->n_decls; i++)
    if (k->decls[i].first_iter <= iter && (best < 0 || k->decls[i].first_iter >= best_first)) {
      best = k->decls[i].phase;
      best_first = k->decls[i].first_iter;
    }
  return best;
}

static int model_phase_intern(model_run *m, const char *name) {
  for (size_t i = 0; i < m->n_phases; i++)
    if (!strcmp(m->phases[i], name)) return (int)i;
  if (GROW(m->phases, m->n_phases, m->cap_phases)) return PM_ENOMEM;
  snprintf(m->phases[m->n_phases], MODEL_NAME_MAX, "%s", name);
  return (int)m->n_phases++;
}

static void model_seen(model_run *m, int rank_idx, double t_s) {
  if (rank_idx < 0 || m->ranks[rank_idx].node < 0 || !isfinite(t_s)) return;
  model_node *n = &m->nodes[m->ranks[rank_idx].node];
  if (!(n->first_seen_s <= t_s)) n->first_seen_s = t_s;
  if (!(n->last_seen_s >= t_s)) n->last_seen_s = t_s;
}

static void model_t0(model_run *m, double t_s) {
  if (isfinite(t_s) && !(m->t0_s <= t_s)) m->t0_s = t_s;
}

/* A rank stamped [b, e] with its own clock in a record the controller
 * received at t_s (its clock): e - t_s <= the rank clock's offset, since
 * nothing is received before it happens. */
static void model_clock(model_rank *k, double b, double e, double t_s) {
  if (!(k->clock_min_s <= b)) k->clock_min_s = b;
  if (!(k->clock_max_s >= e)) k->clock_max_s = e;
  if (!(k->clock_lead_s >= e - t_s)) k->clock_lead_s = e - t_s;
}

/* ---- events ------------------------------------------------------------- */

#define MAX_RANK 1000000u
#define NS_MAX ((uint64_t)1 << 62)

static int model_ev_node(model_reader *r, json_object *rec, const char *ev, double t) {
  model_run *m = r->m;
  char id[MODEL_NAME_MAX], type[MODEL_NAME_MAX];
  int rc = model_str(r, rec, ev, "node", 1, id, sizeof id);
  if (!rc) rc = model_str(r, rec, ev, "type", !strcmp(ev, "node_request"), type, sizeof type);
  if (rc) return rc;
  if (!id[0]) return model_fail(r, ev, "field \"node\" is empty");
  int i = model_node_find(m, id, 1);
  if (i < 0) return i;
  model_node *n = &m->nodes[i];
  if (type[0]) snprintf(n->type, sizeof n->type, "%s", type);
  if (!strcmp(ev, "node_request")) {
    double req, price, gran, min;
    if ((rc = model_num(r, rec, ev, "requested_s", 0, &req)) ||
        (rc = model_num(r, rec, ev, "price_usd_per_hour", 0, &price)) ||
        (rc = model_num(r, rec, ev, "billing_granularity_s", 0, &gran)) ||
        (rc = model_num(r, rec, ev, "billing_minimum_s", 0, &min)))
      return rc;
    if (isfinite(price) && price < 0) return model_fail(r, ev, "field \"price_usd_per_hour\" is negative");
    n->requested_s = isfinite(req) ? req : t;
    n->price_usd_per_hour = isfinite(price) ? price : 0;
    n->billing_granularity_s = isfinite(gran) ? gran : 1;
    n->billing_minimum_s = isfinite(min) ? min : 0;
    model_t0(m, n->requested_s);
  } else if (!strcmp(ev, "node_booted")) {
    n->booted_s = t;
  } else if (!strcmp(ev, "node_staged")) {
    n->staged_s = t;
  } else if (!strcmp(ev, "node_ready")) {
    n->ready_s = t;
  } else if (!isfinite(n->terminated_s)) { /* node_terminated: the first one counts */
    n->terminated_s = t;
  }
  return 0;
}

static int model_ev_rank(model_reader *r, json_object *rec, const char *ev, double t) {
  model_run *m = r->m;
  uint64_t rank, v;
  int rc = model_uint(r, rec, ev, "rank", MAX_RANK, &rank);
  if (rc) return rc;
  int ki = model_rank_find(m, r->cur_launch, (unsigned)rank, 1);
  if (ki < 0) return ki;
  model_rank *k = &m->ranks[ki];
  if (!strcmp(ev, "hello")) {
    char node[MODEL_NAME_MAX];
    if ((rc = model_str(r, rec, ev, "node", 1, node, sizeof node))) return rc;
    if (!node[0]) snprintf(node, sizeof node, "rank%llu", (unsigned long long)rank);
    int ni = model_node_find(m, node, 1);
    if (ni < 0) return ni;
    m->ranks[ki].node = ni;
    model_seen(m, ki, t);
    return 0;
  }
  if (!strcmp(ev, "pi")) {
    uint64_t iter, tb, wall, comp, comm;
    double samples;
    if ((rc = model_uint(r, rec, ev, "iter", UINT64_MAX, &iter)) ||
        (rc = model_uint(r, rec, ev, "t_begin_ns", NS_MAX, &tb)) ||
        (rc = model_uint(r, rec, ev, "wall_ns", NS_MAX, &wall)) ||
        (rc = model_uint(r, rec, ev, "compute_ns", NS_MAX, &comp)) ||
        (rc = model_uint(r, rec, ev, "comm_ns", NS_MAX, &comm)) ||
        (rc = model_num(r, rec, ev, "samples", 0, &samples)))
      return rc;
    if (GROW(m->pis, m->n_pis, m->cap_pis)) return PM_ENOMEM;
    model_pi *p = &m->pis[m->n_pis++];
    p->rank_idx = ki;
    p->phase = model_phase_of(k, iter);
    p->iter = iter;
    p->t_begin_s = (double)tb / 1e9;
    p->wall_s = (double)wall / 1e9;
    p->t_end_s = p->t_begin_s + p->wall_s;
    p->compute_s = (double)comp / 1e9;
    p->comm_s = (double)comm / 1e9;
    p->samples = isfinite(samples) ? samples : 0;
    if (!isfinite(k->first_pi_begin_s)) k->first_pi_begin_s = p->t_begin_s;
    model_clock(k, p->t_begin_s, p->t_end_s, t);
    model_seen(m, ki, t);
    return 0;
  }
  if (!strcmp(ev, "phase")) {
    char name[MODEL_NAME_MAX];
    if ((rc = model_str(r, rec, ev, "name", 1, name, sizeof name))) return rc;
    uint64_t first = 0;
    if ((rc = model_uint(r, rec, ev, "first_iter", UINT64_MAX, &first))) return rc;
    int pi = model_phase_intern(m, name);
    if (pi < 0) return pi;
    if (k->n_decls == MODEL_DECLS_MAX) return 0; /* the intake's cap too */
    if (GROW(k->decls, k->n_decls, k->cap_decls)) return PM_ENOMEM;
    k->decls[k->n_decls++] = (struct model_decl){first, pi};
    return 0;
  }
  /* the rest carry the rank's own clock */
  if ((rc = model_uint(r, rec, ev, "t_ns", NS_MAX, &v))) return rc;
  double ts = (double)v / 1e9;
  model_clock(k, ts, ts, t);
  if (!strcmp(ev, "init_begin")) {
    k->init_begin_s = ts;
  } else if (!strcmp(ev, "init_end")) {
    k->init_end_s = ts;
  } else if (!strcmp(ev, "epoch")) {
    uint64_t e;
    if ((rc = model_uint(r, rec, ev, "epoch", UINT64_MAX, &e))) return rc;
    if (GROW(m->epochs, m->n_epochs, m->cap_epochs)) return PM_ENOMEM;
    m->epochs[m->n_epochs++] = (model_epoch){ki, ts, e};
  } else { /* checkpoint */
    uint64_t it;
    if ((rc = model_uint(r, rec, ev, "iter", UINT64_MAX, &it))) return rc;
    if (GROW(m->ckpts, m->n_ckpts, m->cap_ckpts)) return PM_ENOMEM;
    m->ckpts[m->n_ckpts++] = (model_ckpt){r->cur_launch, ts, it, 1, ki};
  }
  model_seen(m, ki, t);
  return 0;
}

/* The policy's prediction object: {"time_s": .., "cost_usd": .., ...}. */
static int model_prediction(model_reader *r, json_object *p, const char *ev,
                            const char *key, double *time_s, double *cost_usd) {
  if (!json_object_is_type(p, json_type_object))
    return model_fail(r, ev, "field \"%s\" is not an object", key);
  int rc = model_num(r, p, ev, "time_s", 0, time_s);
  if (!rc) rc = model_num(r, p, ev, "cost_usd", 0, cost_usd);
  return rc;
}

static int model_ev_decision(model_reader *r, json_object *rec, double t) {
  model_run *m = r->m;
  const char *ev = "decision";
  /* run.c may nest the policy's object; accept it flat or under "decision" */
  json_object *d = rec, *sub;
  if (json_object_object_get_ex(rec, "decision", &sub) && json_object_is_type(sub, json_type_object))
    d = sub;
  if (GROW(m->decisions, m->n_decisions, m->cap_decisions)) return PM_ENOMEM;
  model_decision *x = &m->decisions[m->n_decisions];
  memset(x, 0, sizeof *x);
  x->t_s = t;
  x->pred_remaining_s = x->pred_cost_usd = x->target_pi_s = x->actual_remaining_s = NAN;
  int rc = model_str(r, d, ev, "action", 1, x->action, sizeof x->action);
  if (!rc) rc = model_str(r, d, ev, "reason", 0, x->reason, sizeof x->reason);
  if (rc) return rc;
  double st = NAN, sc = NAN, tt = NAN, tc = NAN;
  json_object *p;
  if (json_object_object_get_ex(d, "stay", &p) && p &&
      (rc = model_prediction(r, p, ev, "stay", &st, &sc)))
    return rc;
  if (json_object_object_get_ex(d, "target", &p) && p) {
    if ((rc = model_prediction(r, p, ev, "target", &tt, &tc))) return rc;
    uint64_t nodes = 0;
    double pi;
    if ((rc = model_str(r, p, ev, "type", 0, x->target_type, sizeof x->target_type)) ||
        (rc = model_num(r, p, ev, "pi_s", 0, &pi)))
      return rc;
    json_object *nv;
    if (json_object_object_get_ex(p, "nodes", &nv) &&
        (rc = model_uint(r, p, ev, "nodes", 100000, &nodes)))
      return rc;
    x->has_target = 1;
    x->target_nodes = (int)nodes;
    x->target_pi_s = pi;
  }
  int sw = !strcmp(x->action, "switch");
  x->pred_remaining_s = sw && x->has_target ? tt : st;
  x->pred_cost_usd = sw && x->has_target ? tc : sc;
  m->n_decisions++;
  return 0;
}

/* A required array of node ids; each becomes a node index (a node the
 * journal did not introduce is created, as a hello would).  *out is
 * malloc'd and owned by the caller, NULL when the array is empty. */
static int model_node_ids(model_reader *r, json_object *rec, const char *ev, const char *key,
                          int **out, size_t *n) {
  json_object *a;
  if (!json_object_object_get_ex(rec, key, &a) || !a)
    return model_fail(r, ev, "field \"%s\" is missing", key);
  if (!json_object_is_type(a, json_type_array))
    return model_fail(r, ev, "field \"%s\" is not an array", key);
  size_t len = json_object_array_length(a);
  if (!len) return 0;
  if (!(*out = calloc(len, sizeof **out))) return PM_ENOMEM;
  for (size_t i = 0; i < len; i++) {
    json_object *v = json_object_array_get_idx(a, i);
    if (!json_object_is_type(v, json_type_string))
      return model_fail(r, ev, "field \"%s\" item %zu is not a string", key, i);
    const char *id = json_object_get_string(v);
    if (!id[0]) return model_fail(r, ev, "field \"%s\" item %zu is empty", key, i);
    if (strlen(id) >= MODEL_NAME_MAX)
      return model_fail(r, ev, "field \"%s\" item %zu is longer than %d bytes", key, i,
                        MODEL_NAME_MAX - 1);
    int ni = model_node_find(r->m, id, 1);
    if (ni < 0) return ni;
    (*out)[(*n)++] = ni;
  }
  return 0;
}

/* node_lost (run.c, synced before the relaunch): what was lost, where
 * the job resumes, what replaced it.  The next launch is its recovery,
 * not a switch. */
static int model_ev_node_lost(model_reader *r, json_object *rec, double t) {
  model_run *m = r->m;
  const char *ev = "node_lost";
  if (GROW(m->faults, m->n_faults, m->cap_faults)) return PM_ENOMEM;
  model_fault *x = &m->faults[m->n_faults++]; /* owned by m from here on */
  memset(x, 0, sizeof *x);
  x->t_s = x->lost_s = t;
  x->from_launch = r->cur_launch;
  x->to_launch = -1;
  x->ctl_downtime_s = x->ctl_cost_usd = NAN;
  int rc;
  json_object *v;
  if ((rc = model_node_ids(r, rec, ev, "nodes", &x->lost, &x->n_lost)) ||
      (rc = model_node_ids(r, rec, ev, "replacement", &x->repl, &x->n_repl)) ||
      (rc = model_str(r, rec, ev, "what", 1, x->what, sizeof x->what)) ||
      (rc = model_str(r, rec, ev, "checkpoint", 0, x->checkpoint, sizeof x->checkpoint)) ||
      (rc = model_uint(r, rec, ev, "iterations_done", UINT64_MAX, &x->iters_done)) ||
      (rc = model_uint(r, rec, ev, "checkpoint_next_iter", UINT64_MAX, &x->resume_iter)) ||
      (rc = model_uint(r, rec, ev, "iterations_lost", UINT64_MAX, &x->journal_iters_lost)))
    return rc;
  if (json_object_object_get_ex(rec, "checkpoint_every", &v) && v &&
      (rc = model_uint(r, rec, ev, "checkpoint_every", UINT64_MAX, &x->ckpt_every)))
    return rc;
  r->pending_fault = (int)m->n_faults - 1;
  return 0;
}

/* node_lost_recovered: the controller's own downtime and cost of the
 * latest fault, at the first PI after it. */
static int model_ev_node_recovered(model_reader *r, json_object *rec, double t) {
  model_run *m = r->m;
  const char *ev = "node_lost_recovered";
  (void)t;
  model_fault *x = NULL;
  for (size_t i = m->n_faults; i-- > 0 && !x;)
    if (!m->faults[i].recovered) x = &m->faults[i];
  if (!x) return model_fail(r, ev, "no node_lost before it");
  int rc = model_num(r, rec, ev, "downtime_s", 1, &x->ctl_downtime_s);
  if (!rc) rc = model_num(r, rec, ev, "cost_usd", 1, &x->ctl_cost_usd);
  if (rc) return rc;
  x->recovered = 1;
  return 0;
}

static int model_cb(json_object *rec, void *ud) {
  model_reader *r = ud;
  model_run *m = r->m;
  r->line++;
  m->records++;
  json_object *evo;
  json_object_object_get_ex(rec, "ev", &evo); /* journal_read checked it */
  const char *ev = json_object_get_string(evo);
  static const char *const known[] = {
      "node_request", "node_booted", "node_staged", "node_ready", "node_terminated",
      "hello", "pi", "phase", "init_begin", "init_end", "epoch", "checkpoint",
      "run_start", "launch", "relaunch", "decision", "stop_request", "switch_done", "run_end",
      "intake_listen", "node_lost", "node_lost_recovered",
      "finalize", "disconnect", NULL};
  int k = 0;
  while (known[k] && strcmp(known[k], ev)) k++;
  if (!known[k]) return 0; /* someone else's event */
  double t;
  int rc = model_num(r, rec, ev, "t", 1, &t);
  if (rc) return rc;
  m->known_records++;
  if (t > r->last_t_s || !isfinite(r->last_t_s)) r->last_t_s = t;
  model_t0(m, t);
  if (!strcmp(ev, "node_lost")) return model_ev_node_lost(r, rec, t);
  if (!strcmp(ev, "node_lost_recovered")) return model_ev_node_recovered(r, rec, t);
  if (!strncmp(ev, "node_", 5)) return model_ev_node(r, rec, ev, t);
  if (!strcmp(ev, "checkpoint") && !json_object_object_get_ex(rec, "rank", NULL)) {
    /* the controller's own note of a checkpoint (no rank): t is enough */
    if (GROW(m->ckpts, m->n_ckpts, m->cap_ckpts)) return PM_ENOMEM;
    m->ckpts[m->n_ckpts++] = (model_ckpt){r->cur_launch, t, 0, 0, -1};
    return 0;
  }
  if (!strcmp(ev, "hello") || !strcmp(ev, "pi") || !strcmp(ev, "phase") ||
      !strcmp(ev, "init_begin") || !strcmp(ev, "init_end") ||
      !strcmp(ev, "epoch") || !strcmp(ev, "checkpoint"))
    return model_ev_rank(r, rec, ev, t);
  if (!strcmp(ev, "switch_done")) {
    /* run.c's own figures; the report recomputes the downtime split from
     * the rank events, and takes from here only what they cannot give:
     * the new nodes' setup time, paid while the old set trained */
    double setup;
    if ((rc = model_num(r, rec, ev, "setup_s", 0, &setup))) return rc;
    if (GROW(m->done_setup_s, m->n_done, m->cap_done)) return PM_ENOMEM;
    m->done_setup_s[m->n_done++] = setup;
    return 0;
  }
  if (!strcmp(ev, "launch") || !strcmp(ev, "relaunch")) {
    if (model_grow((void **)&m->launch_t_s, &m->cap_launch, (size_t)m->n_launches,
                   sizeof *m->launch_t_s))
      return PM_ENOMEM;
    m->launch_t_s[m->n_launches++] = t;
    r->cur_launch = m->n_launches - 1;
    if (r->pending_fault >= 0) m->faults[r->pending_fault].to_launch = r->cur_launch;
    r->pending_fault = -1;
    return 0;
  }
  if (!strcmp(ev, "decision")) return model_ev_decision(r, rec, t);
  if (!strcmp(ev, "stop_request")) {
    if (GROW(m->stops_s, m->n_stops, m->cap_stops)) return PM_ENOMEM;
    m->stops_s[m->n_stops++] = t;
    return 0;
  }
  if (!strcmp(ev, "run_end")) {
    m->end_s = t;
    m->has_run_end = 1;
  }
  return 0; /* run_start, intake_listen, finalize, disconnect: only their time */
}

#define MODEL_CLOCK_SLACK_S 2.0 /* how far outside the run a rank's time may be */

static _Thread_local char model_warn_buf[2048];

/* A rank with a time of its own outside the run's span (give or take the
 * slack) has a clock that is off: all its times are moved back by its
 * lead over the controller's receive times, which puts them on the
 * controller's clock within the delivery delay, and it is named in the
 * warning.  Ranks inside the span keep their own times, more precise
 * than receive times for durations.  Returns the joined warnings. */
static const char *model_clocks(model_run *m, const char *reader_warn) {
  char *w = model_warn_buf;
  size_t cap = sizeof model_warn_buf, len = 0, more = 0;
  w[0] = '\0';
  if (reader_warn) {
    snprintf(w, cap, "%s", reader_warn);
    len = strlen(w);
  }
  double lo = m->t0_s - MODEL_CLOCK_SLACK_S, hi = m->end_s + MODEL_CLOCK_SLACK_S;
  for (size_t i = 0; i < m->n_ranks; i++) {
    model_rank *k = &m->ranks[i];
    if (!isfinite(k->clock_lead_s) || (k->clock_min_s >= lo && k->clock_max_s <= hi)) continue;
    double fix = k->clock_lead_s;
    k->clock_fix_s = fix;
    k->init_begin_s -= fix;
    k->init_end_s -= fix;
    k->first_pi_begin_s -= fix;
    m->n_clock_fixed++;
    char one[MODEL_NAME_MAX + 200];
    int n = snprintf(one, sizeof one, "%srank %u (launch %d) on node %s: clock differs by "
                     "~%+.1f s from the controller; its times were moved by that",
                     len ? "; " : "", k->rank, k->launch, model_rank_node(m, (int)i), fix);
    if (n > 0 && len + (size_t)n + 40 < cap) {
      memcpy(w + len, one, (size_t)n + 1);
      len += (size_t)n;
    } else {
      more++;
    }
  }
  if (more) snprintf(w + len, cap - len, "; and %zu more ranks", more);
  for (size_t i = 0; m->n_clock_fixed && i < m->n_pis; i++) {
    double fix = m->ranks[m->pis[i].rank_idx].clock_fix_s;
    m->pis[i].t_begin_s -= fix;
    m->pis[i].t_end_s -= fix;
  }
  for (size_t i = 0; m->n_clock_fixed && i < m->n_epochs; i++)
    m->epochs[i].t_s -= m->ranks[m->epochs[i].rank_idx].clock_fix_s;
  for (size_t i = 0; m->n_clock_fixed && i < m->n_ckpts; i++)
    if (m->ckpts[i].rank_idx >= 0) m->ckpts[i].t_s -= m->ranks[m->ckpts[i].rank_idx].clock_fix_s;
  return w[0] ? w : NULL;
}

int model_load(const char *run_dir, model_run *m, const char **warn, char *err,
               size_t cap) {
  memset(m, 0, sizeof *m);
  m->t0_s = m->end_s = NAN;
  err[0] = '\0';
  model_reader r = {.m = m, .pending_fault = -1, .last_t_s = NAN, .err = err, .cap = cap};
  long bad = 0;
  const char *reader_warn = NULL;
  if (warn) *warn = NULL;
  int rc = journal_read(run_dir, model_cb, &r, &bad, &reader_warn);
  if (warn) *warn = reader_warn;
  if (rc == PM_ENOENT) {
    snprintf(err, cap, "%s/journal.jsonl: no such file (is %s a run directory?)", run_dir, run_dir);
    return rc;
  }
  if ((rc == PM_EPARSE || rc == PM_ETOOBIG) && !err[0]) {
    snprintf(err, cap, "%s/journal.jsonl line %ld: %s; not a Paramount journal?", run_dir, bad,
             rc == PM_ETOOBIG ? "line too long" : "not a JSON object with a string \"ev\"");
    return PM_EPARSE;
  }
  if (rc) {
    if (!err[0]) snprintf(err, cap, "%s/journal.jsonl: %s", run_dir, pm_strerror(rc));
    return rc;
  }
  if (m->known_records == 0) {
    snprintf(err, cap, "%s/journal.jsonl: none of its %ld records is a Paramount event; "
             "not a Paramount journal", run_dir, m->records);
    return PM_EPARSE;
  }
  if (!m->has_run_end) m->end_s = r.last_t_s; /* t0_s: set by every known record */
  if (m->n_launches == 0) m->n_launches = 1;
  const char *w = model_clocks(m, reader_warn);
  if (warn) *warn = w;
  return 0;
}

void model_free(model_run *m) {
  if (!m) return;
  free(m->nodes);
  for (size_t i = 0; i < m->n_ranks; i++) free(m->ranks[i].decls);
  free(m->ranks);
  free(m->pis);
  free(m->epochs);
  free(m->ckpts);
  free(m->decisions);
  for (size_t i = 0; i < m->n_faults; i++) {
    free(m->faults[i].lost);
    free(m->faults[i].repl);
  }
  free(m->faults);
  free(m->stops_s);
  free(m->phases);
  free(m->launch_t_s);
  free(m->done_setup_s);
  free(m->switches);
  free(m->types);
  free(m->steady);
  memset(m, 0, sizeof *m);
}

/* ---- derived figures ---------------------------------------------------- */

const char *model_phase_name(const model_run *m, int phase) {
  return phase >= 0 && (size_t)phase < m->n_phases ? m->phases[phase] : "";
}

const char *model_rank_node(const model_run *m, int rank_idx) {
  int n = m->ranks[rank_idx].node;
  return n >= 0 ? m->nodes[n].id : "?";
}

const char *model_rank_type(const model_run *m, int rank_idx) {
  int n = m->ranks[rank_idx].node;
  return n >= 0 ? m->nodes[n].type : "";
}

/* When a node started and stopped costing (or, without a provider, was
 * seen by its ranks). */
static void model_node_span(const model_run *m, const model_node *n, double *b, double *e) {
  *b = isfinite(n->requested_s) ? n->requested_s : n->first_seen_s;
  *e = isfinite(n->terminated_s) ? n->terminated_s
       : isfinite(n->requested_s) ? m->end_s : n->last_seen_s;
}

double model_cost_at(const model_run *m, double t_s) {
  double usd = 0;
  for (size_t i = 0; i < m->n_nodes; i++) {
    const model_node *n = &m->nodes[i];
    if (!(n->price_usd_per_hour > 0) || !isfinite(n->requested_s)) continue;
    double b, e;
    model_node_span(m, n, &b, &e);
    double until = t_s < e ? t_s : e;
    if (until > b) usd += (until - b) * n->price_usd_per_hour / 3600.0;
  }
  return usd;
}

void model_node_extent(const model_run *m, size_t i, double *b, double *e) {
  model_node_span(m, &m->nodes[i], b, e);
}

static void model_costs(model_run *m) {
  m->cost_usd = 0;
  for (size_t i = 0; i < m->n_nodes; i++) {
    model_node *n = &m->nodes[i];
    n->cost_usd = 0;
    if (!(n->price_usd_per_hour > 0) || !isfinite(n->requested_s)) continue;
    double b, e;
    model_node_span(m, n, &b, &e);
    double d = e > b ? e - b : 0;
    if (d < n->billing_minimum_s) d = n->billing_minimum_s;
    double g = n->billing_granularity_s > 0 ? n->billing_granularity_s : 1;
    d = ceil(d / g - 1e-9) * g;
    n->cost_usd = d * n->price_usd_per_hour / 3600.0;
    m->cost_usd += n->cost_usd;
  }
}

/* "2 x c5.large, 1 x t3.medium": the node types of one launch. */
static void model_composition(const model_run *m, int launch, char *out, size_t cap) {
  out[0] = '\0';
  size_t len = 0;
  int done[1024] = {0};
  for (size_t i = 0; i < m->n_ranks && i < 1024; i++) {
    if (m->ranks[i].launch != launch || done[i]) continue;
    const char *ty = model_rank_type(m, (int)i);
    int count = 0;
    for (size_t j = i; j < m->n_ranks && j < 1024; j++)
      if (m->ranks[j].launch == launch && !strcmp(model_rank_type(m, (int)j), ty)) {
        done[j] = 1;
        count++;
      }
    int w = snprintf(out + len, cap - len, "%s%d x %s", len ? ", " : "", count,
                     ty[0] ? ty : "?");
    if (w < 0 || (size_t)w >= cap - len) break;
    len += (size_t)w;
  }
}

/* Whether launch L was the relaunch after a fault rather than a switch. */
static int model_is_recovery(const model_run *m, int L) {
  for (size_t i = 0; i < m->n_faults; i++)
    if (m->faults[i].to_launch == L) return 1;
  return 0;
}

static int model_switches(model_run *m) {
  if (m->n_launches < 2) return 0;
  m->switches = calloc((size_t)m->n_launches, sizeof *m->switches);
  if (!m->switches) return PM_ENOMEM;
  for (int L = 1; L < m->n_launches; L++) {
    if (model_is_recovery(m, L)) continue; /* in the faults table instead */
    model_switch *s = &m->switches[m->n_switches];
    s->to_launch = L;
    s->stop_t_s = s->last_old_pi_s = s->ckpt_end_s = s->new_init_begin_s = NAN;
    s->first_new_pi_s = NAN;
    for (size_t i = 0; i < m->n_pis; i++) {
      const model_pi *p = &m->pis[i];
      int l = m->ranks[p->rank_idx].launch;
      if (l == L - 1 && !(s->last_old_pi_s >= p->t_end_s)) s->last_old_pi_s = p->t_end_s;
      if (l == L && !(s->first_new_pi_s <= p->t_begin_s)) s->first_new_pi_s = p->t_begin_s;
    }
    if (!isfinite(s->last_old_pi_s) || !isfinite(s->first_new_pi_s)) continue;
    for (size_t i = 0; i < m->n_stops; i++)
      if (m->stops_s[i] <= s->first_new_pi_s) s->stop_t_s = m->stops_s[i];
    for (size_t i = 0; i < m->n_ckpts; i++)
      if (m->ckpts[i].launch == L - 1 && m->ckpts[i].t_s >= s->last_old_pi_s &&
          !(s->ckpt_end_s >= m->ckpts[i].t_s))
        s->ckpt_end_s = m->ckpts[i].t_s;
    if (!isfinite(s->ckpt_end_s)) s->ckpt_end_s = s->last_old_pi_s;
    for (size_t i = 0; i < m->n_ranks; i++)
      if (m->ranks[i].launch == L && !(s->new_init_begin_s <= m->ranks[i].init_begin_s))
        s->new_init_begin_s = m->ranks[i].init_begin_s;
    if (!isfinite(s->new_init_begin_s) || s->new_init_begin_s < s->ckpt_end_s)
      s->new_init_begin_s = s->first_new_pi_s; /* no init marks: all restart */
    s->checkpoint_s = s->ckpt_end_s - s->last_old_pi_s;
    s->restart_s = s->new_init_begin_s - s->ckpt_end_s;
    s->reinit_s = s->first_new_pi_s - s->new_init_begin_s;
    s->downtime_s = s->first_new_pi_s - s->last_old_pi_s;
    s->setup_s = m->n_switches < m->n_done ? m->done_setup_s[m->n_switches] : NAN;
    model_composition(m, L - 1, s->from, sizeof s->from);
    model_composition(m, L, s->to, sizeof s->to);
    m->n_switches++;
  }
  return 0;
}

static int model_type_find(model_run *m, const char *type) {
  for (size_t i = 0; i < m->n_types; i++)
    if (!strcmp(m->types[i].type, type)) return (int)i;
  model_type *t = &m->types[m->n_types];
  memset(t, 0, sizeof *t);
  snprintf(t->type, sizeof t->type, "%s", type);
  return (int)m->n_types++;
}

/* Mean accumulator: NaN when empty. */
typedef struct { double sum; int n; } model_acc;
static void acc_add(model_acc *a, double v) {
  if (isfinite(v)) {
    a->sum += v;
    a->n++;
  }
}
static double acc_mean(const model_acc *a) { return a->n ? a->sum / a->n : NAN; }

static int model_types(model_run *m) {
  size_t cap = m->n_nodes + 1;
  m->types = calloc(cap, sizeof *m->types);
  model_acc *acc = calloc(cap * 5, sizeof *acc); /* boot, stage, setup, init, epoch */
  if (!m->types || !acc) {
    free(acc);
    return PM_ENOMEM;
  }
  for (size_t i = 0; i < m->n_nodes; i++) {
    const model_node *n = &m->nodes[i];
    int t = model_type_find(m, n->type);
    m->types[t].n_nodes++;
    m->types[t].price_usd_per_hour = n->price_usd_per_hour;
    acc_add(&acc[t * 5 + 0], n->booted_s - n->requested_s);
    acc_add(&acc[t * 5 + 1], n->staged_s - n->booted_s);
    acc_add(&acc[t * 5 + 2], n->ready_s - n->requested_s);
  }
  for (size_t i = 0; i < m->n_ranks; i++) {
    if (m->ranks[i].node < 0) continue;
    int t = model_type_find(m, model_rank_type(m, (int)i));
    acc_add(&acc[t * 5 + 3], m->ranks[i].init_end_s - m->ranks[i].init_begin_s);
  }
  for (size_t i = 0; i < m->n_epochs; i++) {
    const model_epoch *e = &m->epochs[i];
    if (m->ranks[e->rank_idx].node < 0) continue;
    double prev = m->ranks[e->rank_idx].first_pi_begin_s;
    for (size_t j = i; j-- > 0;)
      if (m->epochs[j].rank_idx == e->rank_idx) {
        prev = m->epochs[j].t_s;
        break;
      }
    int t = model_type_find(m, model_rank_type(m, e->rank_idx));
    acc_add(&acc[t * 5 + 4], e->t_s - prev);
  }
  for (size_t t = 0; t < m->n_types; t++) {
    m->types[t].boot_s = acc_mean(&acc[t * 5 + 0]);
    m->types[t].stage_s = acc_mean(&acc[t * 5 + 1]);
    m->types[t].setup_s = acc_mean(&acc[t * 5 + 2]);
    m->types[t].init_s = acc_mean(&acc[t * 5 + 3]);
    m->types[t].epoch_s = acc_mean(&acc[t * 5 + 4]);
    m->types[t].n_epochs = acc[t * 5 + 4].n;
  }
  free(acc);
  return 0;
}

/* Steady PI per (type, phase): policy_estimate_steady on every rank's
 * series in that phase (one series per rank per launch), averaged over
 * the series.  The estimator is the policy's, so the report shows what
 * the decisions saw. */
static int model_steady_all(model_run *m) {
  size_t np = m->n_phases + 1; /* index 0: default phase */
  size_t cap = (m->n_types + 1) * np;
  m->steady = calloc(cap, sizeof *m->steady);
  double *wall = malloc((m->n_pis + 1) * sizeof *wall);
  double *comp = malloc((m->n_pis + 1) * sizeof *comp);
  model_acc *acc = calloc(cap * 5, sizeof *acc); /* pi, lo, hi, compute, comm */
  int rc = 0;
  if (!m->steady || !wall || !comp || !acc) {
    rc = PM_ENOMEM;
    goto out_free;
  }
  policy_steady_cfg_t cfg;
  policy_steady_cfg_default(&cfg);
  int *slot = calloc(cap, sizeof *slot); /* (type, phase) -> steady index + 1 */
  if (!slot) {
    rc = PM_ENOMEM;
    goto out_free;
  }
  for (size_t ri = 0; ri < m->n_ranks; ri++) {
    const char *ty = model_rank_type(m, (int)ri);
    int t = -1;
    for (size_t i = 0; i < m->n_types; i++)
      if (!strcmp(m->types[i].type, ty)) t = (int)i;
    if (t < 0) t = (int)m->n_types; /* a rank without a node */
    for (size_t ph = 0; ph < np; ph++) {
      size_t n = 0;
      double comm_sum = 0;
      for (size_t i = 0; i < m->n_pis; i++) {
        const model_pi *p = &m->pis[i];
        if (p->rank_idx != (int)ri || p->phase + 1 != (int)ph) continue;
        wall[n] = p->wall_s;
        comp[n] = p->compute_s;
        comm_sum += p->comm_s;
        n++;
      }
      if (!n) continue;
      policy_steady_t sw, sc;
      if (policy_estimate_steady(wall, n, &cfg, &sw) ||
          policy_estimate_steady(comp, n, &cfg, &sc))
        continue; /* cannot happen for finite samples; skip rather than lie */
      size_t k = (size_t)t * np + ph;
      if (!slot[k]) {
        model_steady *s = &m->steady[m->n_steady];
        snprintf(s->type, sizeof s->type, "%s", ty);
        snprintf(s->phase, sizeof s->phase, "%s", model_phase_name(m, (int)ph - 1));
        s->steady = 1;
        slot[k] = (int)++m->n_steady;
      }
      model_steady *s = &m->steady[slot[k] - 1];
      model_acc *a = &acc[(size_t)(slot[k] - 1) * 5];
      s->n_series++;
      s->n_pis += n;
      if (sw.warmup > s->warmup_pis) s->warmup_pis = sw.warmup;
      if (!sw.steady) s->steady = 0;
      acc_add(&a[0], sw.mean);
      acc_add(&a[1], sw.lo);
      acc_add(&a[2], sw.hi);
      acc_add(&a[3], sc.mean);
      acc_add(&a[4], comm_sum / (double)n);
    }
  }
  for (size_t i = 0; i < m->n_steady; i++) {
    model_acc *a = &acc[i * 5];
    m->steady[i].pi_s = acc_mean(&a[0]);
    m->steady[i].pi_lo_s = acc_mean(&a[1]);
    m->steady[i].pi_hi_s = acc_mean(&a[2]);
    m->steady[i].compute_s = acc_mean(&a[3]);
    m->steady[i].comm_s = acc_mean(&a[4]);
  }
  free(slot);
out_free:
  free(wall);
  free(comp);
  free(acc);
  return rc;
}

static int model_u64_cmp(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* The checkpoint interval seen up to time t_s: the widest gap between
 * successive checkpointed iterations the ranks reported; with one
 * checkpoint at iteration k, k + 1.  *out 0: no checkpoint seen. */
static int model_ckpt_interval(const model_run *m, double t_s, uint64_t *out) {
  *out = 0;
  uint64_t *it = malloc((m->n_ckpts + 1) * sizeof *it);
  if (!it) return PM_ENOMEM;
  size_t n = 0;
  for (size_t i = 0; i < m->n_ckpts; i++)
    if (m->ckpts[i].from_rank && m->ckpts[i].t_s <= t_s) it[n++] = m->ckpts[i].iter;
  qsort(it, n, sizeof *it, model_u64_cmp);
  uint64_t gap = n == 1 ? it[0] + 1 : 0;
  for (size_t i = 1; i < n; i++)
    if (it[i] - it[i - 1] > gap) gap = it[i] - it[i - 1];
  free(it);
  *out = gap;
  return 0;
}

static double model_price(const model_run *m, int node) {
  double p = node >= 0 ? m->nodes[node].price_usd_per_hour : 0;
  return p > 0 ? p : 0;
}

/* Whether node index ni ran a rank of launch L. */
static int model_node_in_launch(const model_run *m, int ni, int L) {
  for (size_t i = 0; i < m->n_ranks; i++)
    if (m->ranks[i].launch == L && m->ranks[i].node == ni) return 1;
  return 0;
}

/* Per fault, from the rank events around it: the last PI before it, the
 * first after, the iterations lost, the checkpoint interval they are
 * bounded by, and what it cost (see docs/report.md): the lost nodes
 * billed from the last PI the checkpoint kept to their termination, the
 * surviving nodes from that PI to the first PI after the fault (their
 * lost work and the downtime), the replacements from their request to
 * that first PI (their setup, then the relaunch). */
static int model_faults(model_run *m) {
  for (size_t fi = 0; fi < m->n_faults; fi++) {
    model_fault *x = &m->faults[fi];
    int L = x->from_launch, R = x->to_launch;
    for (size_t i = 0; i < x->n_lost; i++) {
      double e = m->nodes[x->lost[i]].terminated_s;
      if (isfinite(e) && e < x->lost_s) x->lost_s = e;
    }
    x->last_pi_s = x->last_useful_s = x->first_pi_s = x->downtime_s = NAN;
    x->has_last_iter = 0;
    uint64_t first_iter = 0;
    int has_first_iter = 0;
    double first_old_s = NAN;
    for (size_t i = 0; i < m->n_pis; i++) {
      const model_pi *p = &m->pis[i];
      int l = m->ranks[p->rank_idx].launch;
      if (l == L) {
        if (!(x->last_pi_s >= p->t_end_s)) x->last_pi_s = p->t_end_s;
        if (!(first_old_s <= p->t_begin_s)) first_old_s = p->t_begin_s;
        if (!x->has_last_iter || p->iter > x->last_iter) x->last_iter = p->iter;
        x->has_last_iter = 1;
      } else if (l == R && R >= 0) {
        if (!(x->first_pi_s <= p->t_begin_s)) x->first_pi_s = p->t_begin_s;
        if (!has_first_iter || p->iter < first_iter) first_iter = p->iter;
        has_first_iter = 1;
      }
    }
    /* where the job really went on: its first PI after the fault */
    if (has_first_iter) x->resume_iter = first_iter;
    if (x->has_last_iter)
      x->iters_lost = x->last_iter + 1 > x->resume_iter ? x->last_iter + 1 - x->resume_iter : 0;
    else
      x->iters_lost = x->journal_iters_lost;
    for (size_t i = 0; i < m->n_pis; i++) {
      const model_pi *p = &m->pis[i];
      if (m->ranks[p->rank_idx].launch == L && p->iter < x->resume_iter &&
          !(x->last_useful_s >= p->t_end_s))
        x->last_useful_s = p->t_end_s;
    }
    /* nothing kept from the lost launch: its whole time was lost */
    if (!isfinite(x->last_useful_s)) x->last_useful_s = first_old_s;
    if (!isfinite(x->last_useful_s)) x->last_useful_s = x->lost_s;
    x->downtime_s = isfinite(x->first_pi_s) && isfinite(x->last_pi_s)
                        ? x->first_pi_s - x->last_pi_s : x->ctl_downtime_s;
    x->interval_from_config = x->ckpt_every > 0;
    x->interval = x->ckpt_every;
    int rc;
    if (!x->interval && (rc = model_ckpt_interval(m, x->lost_s, &x->interval))) return rc;

    double back = isfinite(x->first_pi_s) ? x->first_pi_s : m->end_s;
    x->lost_usd = x->survivors_usd = x->replacement_usd = 0;
    for (size_t i = 0; i < x->n_lost; i++) {
      const model_node *n = &m->nodes[x->lost[i]];
      double e = isfinite(n->terminated_s) ? n->terminated_s : x->lost_s;
      if (e > x->last_useful_s)
        x->lost_usd += model_price(m, x->lost[i]) / 3600.0 * (e - x->last_useful_s);
    }
    for (size_t ni = 0; R >= 0 && ni < m->n_nodes; ni++) {
      int fresh = 0;
      for (size_t i = 0; i < x->n_repl; i++) fresh |= x->repl[i] == (int)ni;
      if (fresh || !model_node_in_launch(m, (int)ni, L) || !model_node_in_launch(m, (int)ni, R))
        continue;
      if (back > x->last_useful_s)
        x->survivors_usd += model_price(m, (int)ni) / 3600.0 * (back - x->last_useful_s);
    }
    for (size_t i = 0; i < x->n_repl; i++) {
      const model_node *n = &m->nodes[x->repl[i]];
      double b = isfinite(n->requested_s) ? n->requested_s : n->first_seen_s;
      if (isfinite(b) && back > b)
        x->replacement_usd += model_price(m, x->repl[i]) / 3600.0 * (back - b);
    }
    x->cost_usd = x->lost_usd + x->survivors_usd + x->replacement_usd;
  }
  return 0;
}

int model_derive(model_run *m, char *err, size_t cap) {
  model_costs(m);
  for (size_t i = 0; i < m->n_decisions; i++)
    m->decisions[i].actual_remaining_s = m->end_s - m->decisions[i].t_s;
  int rc = model_faults(m);
  if (!rc) rc = model_switches(m);
  if (!rc) rc = model_types(m);
  if (!rc) rc = model_steady_all(m);
  if (rc) snprintf(err, cap, "cannot build the run model: %s", pm_strerror(rc));
  return rc;
}
