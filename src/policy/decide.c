/* decide.c - the decision rule of each policy kind: paramount (model
 * based: switch when the predicted gain beats the switch cost with margin
 * and confidence), static (never), clap-bot (CLAP's own optimiser: add
 * the best throughput-per-dollar type, stop the worst node, every period).
 * Every outcome carries the numbers that made it, for the journal.
 */
#include <math.h>
#include <string.h>

#include "paramount.h"
#include "policy/policy.h"
#include "policy/policy_int.h"
#include "policy/predict_int.h"

static int min_time(const policy_cfg_t *cfg) {
  return cfg->objective == POLICY_MIN_TIME ||
         cfg->objective == POLICY_MIN_TIME_BUDGET;
}

/* The objective's value; when infeasible, the constraint's own measure
 * (end time past a deadline, total past a budget) ranks instead. */
static double score(const policy_cfg_t *cfg, const policy_prediction_t *p) {
  if (!p->feasible) {
    if (cfg->objective == POLICY_MIN_COST_DEADLINE) return p->end_s;
    if (cfg->objective == POLICY_MIN_TIME_BUDGET) return p->total_usd;
  }
  return min_time(cfg) ? p->time_s : p->cost_usd;
}

static double objective(const policy_cfg_t *cfg, const policy_prediction_t *p,
                        int v) {
  if (min_time(cfg)) return v == 1 ? p->time_lo_s : v == 2 ? p->time_hi_s
                                                             : p->time_s;
  return v == 1 ? p->cost_lo_usd : v == 2 ? p->cost_hi_usd : p->cost_usd;
}

/* 1 when a ranks strictly before b: feasible first, then the score, then
 * the smaller change. */
static int better(const policy_cfg_t *cfg, const policy_prediction_t *a,
                  const policy_prediction_t *b) {
  if (a->feasible != b->feasible) return a->feasible;
  double sa = score(cfg, a), sb = score(cfg, b);
  if (sa != sb) return sa < sb;
  return a->new_nodes + a->removed_nodes < b->new_nodes + b->removed_nodes;
}

static int latest_launch(const policy_input_t *in) {
  int l = -1;
  for (size_t i = 0; i < in->n_series; i++)
    if (in->series[i].n_pis && in->series[i].launch > l)
      l = in->series[i].launch;
  return l;
}

/* Has the current node set itself been measured past its warm-up since
 * it began?  Before that nothing justifies leaving it (anti-flap). */
static int current_set_steady(const policy_input_t *in,
                              const policy_estimates_t *e, int p0) {
  int l = latest_launch(in);
  for (size_t i = 0; i < in->n_nodes; i++) {
    const policy_estimate_t *x =
        policy_est_find(e, in->nodes[i].type, in->phases[p0].name);
    if (!x || !x->settled || x->launch != l) return 0;
  }
  return 1;
}

static void set_target(policy_decision_t *d, const policy_prediction_t *p) {
  d->target = *p;
  d->has_target = 1;
}

/* Fills the add/remove lists for "p.nodes nodes of p.type". */
static void set_change(policy_decision_t *d, const policy_input_t *in,
                       const char *type, int nodes) {
  int kept = 0;
  d->n_remove = 0;
  for (size_t i = 0; i < in->n_nodes; i++) {
    if (kept < nodes && policy_name_eq(in->nodes[i].type, type))
      kept++;
    else
      d->remove[d->n_remove++] = (int)i;
  }
  policy_name_copy(d->add_type, type);
  d->add_count = nodes - kept;
}

/* The fastest and slowest s/sample of `type` in `phase` over the last k
 * PIs of each of its series in launch l (a series' first PI is left out:
 * it carries the launch's own start).  0 when a series has fewer PIs, or
 * when one still falls PI after PI (a warm-up not over: its fastest PI
 * is no bound on its steady speed); else 1. */
static int recent_extremes(const policy_input_t *in, const char *type,
                           const char *phase, int l, size_t k, double *lo,
                           double *hi) {
  int found = 0;
  double mn = INFINITY, mx = 0;
  for (size_t i = 0; i < in->n_series; i++) {
    const policy_series_t *s = &in->series[i];
    if (s->launch != l || !policy_name_eq(s->type, type) ||
        !policy_name_eq(s->phase, phase))
      continue;
    if (s->n_pis < k + 1) return 0;
    policy_view_t v = {NULL, s->pis, s->batch_per_rank, VIEW_S_PER_SAMPLE};
    int falling = k >= 3;
    for (size_t j = s->n_pis - k; j < s->n_pis; j++) {
      double x = view_at(&v, j);
      if (x < mn) mn = x;
      if (x > mx) mx = x;
      if (j > s->n_pis - k && !(x < view_at(&v, j - 1))) falling = 0;
    }
    if (falling) return 0;
    found = 1;
  }
  if (!found || !(mn > 0)) return 0;
  *lo = mn;
  *hi = mx;
  return 1;
}

/* The early rule (cfg->early_pis): before the estimates settle, 1 when
 * moving to c pays even with every current type at the fastest and c's
 * type at the slowest of their last early_pis PIs in the current launch,
 * by early_margin_rel of staying (or the flap-adjusted margin, when
 * larger), and c at that slow end still beats every other measured type
 * at its fast end.  Types measured side by side in one launch share whatever
 * outside load there was, and extremes need no settled interval: a gross
 * difference is acted on within a few PIs, a close one waits for the
 * confidence intervals.  Sets d->gain_early when it could be judged. */
static int early_switch(const policy_input_t *in, const policy_cfg_t *cfg,
                        int p0, const policy_prediction_t *c,
                        policy_decision_t *d) {
  if (cfg->early_pis <= 0 || !c->measured || !c->type[0]) return 0;
  int l = latest_launch(in);
  const char *phase = in->phases[p0].name;
  size_t k = (size_t)cfg->early_pis;
  policy_estimates_t e = d->estimates; /* ~33 KiB, like d itself */
  for (size_t i = 0; i <= in->n_nodes; i++) {
    const char *type = i < in->n_nodes ? in->nodes[i].type : c->type;
    double lo, hi;
    if (!recent_extremes(in, type, phase, l, k, &lo, &hi)) return 0;
    size_t j = 0;
    while (j < e.n && !(policy_name_eq(e.est[j].type, type) &&
                        policy_name_eq(e.est[j].phase, phase)))
      j++;
    if (j == e.n) return 0;
    e.est[j].s_per_sample_lo = lo;
    e.est[j].s_per_sample_hi = hi;
  }
  policy_prediction_t st, tg;
  if (policy_predict(in, cfg, &e, NULL, 0, &st) ||
      policy_predict(in, cfg, &e, c->type, c->nodes, &tg))
    return 0;
  if (!tg.feasible && st.feasible) return 0;
  /* The pick must be as sure as the gain: the target at its slow end
   * still beats every other measured type at its fast end. */
  for (size_t i = 0; i < d->n_per_type; i++) {
    const policy_prediction_t *q = &d->per_type[i];
    policy_prediction_t qf;
    if (!q->measured || policy_name_eq(q->type, c->type)) continue;
    if (policy_predict(in, cfg, &e, q->type, q->nodes, &qf)) return 0;
    if (qf.feasible && !(objective(cfg, &tg, 2) < objective(cfg, &qf, 1))) return 0;
  }
  double base = objective(cfg, &st, 1);
  d->gain_early = base - objective(cfg, &tg, 2);
  double need = cfg->early_margin_rel > d->margin_rel ? cfg->early_margin_rel
                                                      : d->margin_rel;
  return d->gain_early > 0 && d->gain_early >= need * base;
}

static void decide_paramount(const policy_input_t *in, const policy_cfg_t *cfg,
                             int p0, policy_decision_t *d) {
  int lo = cfg->min_nodes > 0 ? cfg->min_nodes : (int)in->n_nodes;
  int hi = cfg->max_nodes > 0 ? cfg->max_nodes : (int)in->n_nodes;
  if (hi < lo) hi = lo;
  if (hi > POLICY_MAX_NODES) hi = POLICY_MAX_NODES;
  const policy_prediction_t *best_m = NULL, *best_any = NULL;
  for (size_t t = 0; t < in->n_types; t++) {
    const policy_type_t *ty = &in->types[t];
    policy_prediction_t tb;
    int have = 0;
    for (int n = lo; n <= hi; n++) {
      if (ty->max_nodes > 0 && n > ty->max_nodes) break;
      policy_prediction_t p;
      if (policy_predict(in, cfg, &d->estimates, ty->name, n, &p)) continue;
      if (p.is_stay) continue; /* that is the stay prediction */
      d->n_candidates++;
      if (!have || better(cfg, &p, &tb)) {
        tb = p;
        have = 1;
      }
    }
    if (!have) continue;
    d->per_type[d->n_per_type] = tb;
    const policy_prediction_t *q = &d->per_type[d->n_per_type++];
    if (!best_any || better(cfg, q, best_any)) best_any = q;
    if (q->measured && (!best_m || better(cfg, q, best_m))) best_m = q;
  }

  double margin = cfg->margin_rel;
  for (int i = 0; i < in->n_switches && i < 8; i++) margin *= cfg->flap_factor;
  d->margin_rel = margin;

  /* A never-measured type that looks best is worth a probe, not a bet. */
  if (cfg->probe_unmeasured && best_any && !best_any->measured &&
      better(cfg, best_any, &d->stay) &&
      score(cfg, &d->stay) - score(cfg, best_any) >=
          margin * score(cfg, &d->stay)) {
    set_target(d, best_any);
    d->gain = score(cfg, &d->stay) - score(cfg, best_any);
    d->gain_required = margin * score(cfg, &d->stay);
    if (in->now_s - in->last_change_s < cfg->min_dwell_s ||
        !current_set_steady(in, &d->estimates, p0)) {
      d->action = POLICY_WAIT;
      d->reason = "probe deferred: current cluster not yet settled";
      return;
    }
    d->action = POLICY_PROBE;
    d->reason = "unmeasured type predicted best from its catalog hint";
    policy_name_copy(d->add_type, best_any->type);
    d->add_count = 1;
    d->n_remove = 0;
    return;
  }
  const policy_prediction_t *c = best_m;
  if (!c || !better(cfg, c, &d->stay)) {
    if (c) set_target(d, c);
    d->action = POLICY_STAY;
    d->reason = c ? "staying is predicted best" : "no candidate to compare";
    return;
  }
  set_target(d, c);
  d->forced = !d->stay.feasible && c->feasible;
  if (d->stay.feasible == c->feasible) {
    d->gain = score(cfg, &d->stay) - score(cfg, c);
    d->gain_required = margin * score(cfg, &d->stay);
  } else {
    d->gain = objective(cfg, &d->stay, 0) - objective(cfg, c, 0);
    d->gain_required = 0;
  }
  d->gain_pessimistic = objective(cfg, &d->stay, 1) - objective(cfg, c, 2);
  if (!d->forced && d->gain < d->gain_required) {
    d->action = POLICY_STAY;
    d->reason = "predicted gain below the margin";
    return;
  }
  if (in->now_s - in->last_change_s < cfg->min_dwell_s) {
    d->action = POLICY_WAIT;
    d->reason = "dwell time after the last change";
    return;
  }
  int set_steady = current_set_steady(in, &d->estimates, p0);
  if (!set_steady || !d->stay.settled || !c->settled) {
    if (early_switch(in, cfg, p0, c, d)) {
      d->early = 1;
      d->action = POLICY_SWITCH;
      d->reason = "gain holds at the extremes of the last PIs (early rule)";
      set_change(d, in, c->type, c->nodes);
      return;
    }
    d->action = POLICY_WAIT;
    d->reason = !set_steady ? "current cluster not yet settled since the last change"
                            : "estimates not settled";
    return;
  }
  if (!d->forced && !(d->gain_pessimistic > 0)) {
    d->action = POLICY_WAIT;
    d->reason = "gain not certain within the confidence intervals";
    return;
  }
  d->action = POLICY_SWITCH;
  d->reason = d->forced ? "staying breaks the constraint"
                        : "predicted gain beats switch cost and margin";
  set_change(d, in, c->type, c->nodes);
}

/* Samples per dollar of one node of a type: CLAP's bot takes the mean of
 * every PI measured (no warm-up detection). */
static double per_dollar(const policy_input_t *in, const policy_estimates_t *e,
                         const char *type, const char *phase) {
  const policy_estimate_t *x = policy_est_find(e, type, phase);
  const policy_type_t *t = policy_type_find(in, type);
  if (!x || !t || !(x->raw_s_per_sample > 0)) return -1;
  if (!(t->price_usd_per_hour > 0)) return INFINITY;
  return 3600.0 / (x->raw_s_per_sample * t->price_usd_per_hour);
}

static void decide_clapbot(const policy_input_t *in, const policy_cfg_t *cfg,
                           int p0, policy_decision_t *d) {
  int homogeneous = 1;
  for (size_t i = 1; i < in->n_nodes; i++)
    if (!policy_name_eq(in->nodes[i].type, in->nodes[0].type)) homogeneous = 0;
  if (homogeneous) {
    d->action = POLICY_STAY;
    d->reason = "cluster is homogeneous";
    return;
  }
  if (in->now_s - in->last_change_s < cfg->clapbot_period_s) {
    d->action = POLICY_WAIT;
    d->reason = "clap-bot period not elapsed";
    return;
  }
  const char *phase = in->phases[p0].name;
  const policy_type_t *best = NULL;
  double best_v = -1;
  for (size_t t = 0; t < in->n_types; t++) {
    double v = per_dollar(in, &d->estimates, in->types[t].name, phase);
    if (v > best_v) {
      best_v = v;
      best = &in->types[t];
    }
  }
  int worst = -1;
  double worst_v = INFINITY;
  for (size_t i = 0; i < in->n_nodes; i++) {
    double v = per_dollar(in, &d->estimates, in->nodes[i].type, phase);
    if (v < 0) {
      d->action = POLICY_WAIT;
      d->reason = "a node of the cluster is not measured yet";
      return;
    }
    if (v <= worst_v) {
      worst_v = v;
      worst = (int)i;
    }
  }
  if (!best || worst < 0 || policy_name_eq(best->name, in->nodes[worst].type)) {
    d->action = POLICY_STAY;
    d->reason = "worst node is of the best type";
    return;
  }
  policy_change_t ch;
  memset(&ch, 0, sizeof ch);
  for (size_t i = 0; i < in->n_nodes; i++) ch.keep[i] = (int)i != worst;
  ch.add_type = best;
  ch.add_count = 1;
  policy_prediction_t p;
  if (policy_predict_change(in, cfg, &d->estimates, &ch, &p) == 0) {
    set_target(d, &p);
    d->gain = objective(cfg, &d->stay, 0) - objective(cfg, &p, 0);
  }
  d->action = POLICY_SWITCH;
  d->reason = "add one node of the best type, stop the worst node";
  policy_name_copy(d->add_type, best->name);
  d->add_count = 1;
  d->remove[0] = worst;
  d->n_remove = 1;
}

int policy_decide(const policy_input_t *in, const policy_cfg_t *cfg,
                  policy_decision_t *out) {
  if (!out) return PM_EINVAL;
  int rc = policy_input_check(in, cfg);
  if (rc) return rc;
  /* ~40 KiB: fine on a thread stack, and *out is written only once. */
  policy_decision_t d;
  memset(&d, 0, sizeof d);
  d.kind = cfg->kind;
  d.objective = cfg->objective;
  d.now_s = in->now_s;
  d.margin_rel = cfg->margin_rel;
  d.gain_early = NAN;
  rc = policy_estimate(in, cfg, &d.estimates);
  if (rc) return rc;
  int p0 = policy_current_phase(in);
  if (p0 < 0) {
    d.action = POLICY_STAY;
    d.reason = "job complete";
    *out = d;
    return 0;
  }
  int have_stay = policy_predict(in, cfg, &d.estimates, NULL, 0, &d.stay) == 0;
  if (cfg->kind == POLICY_STATIC) {
    d.action = POLICY_STAY;
    d.reason = "static policy never changes the cluster";
  } else if (!have_stay) {
    d.action = POLICY_WAIT;
    d.reason = "current cluster not measured yet";
  } else if (cfg->kind == POLICY_CLAP_BOT) {
    decide_clapbot(in, cfg, p0, &d);
  } else {
    decide_paramount(in, cfg, p0, &d);
  }
  *out = d;
  return 0;
}
