/* predict.c - the cost model: remaining time and cost of the job for a
 * change of the cluster (or none), with make-before-break switches.
 *
 * Remaining work is counted in samples per phase so that it does not
 * depend on the node count; each configuration turns it into PIs of
 * known duration (slowest rank's compute + allreduce) and into node-hours
 * billed per node, from request to termination, in whole granules.
 */
#include <math.h>
#include <string.h>

#include "paramount.h"
#include "policy/policy.h"
#include "policy/policy_int.h"
#include "policy/predict_int.h"

const policy_type_t *policy_type_find(const policy_input_t *in,
                                      const char *name) {
  for (size_t i = 0; i < in->n_types; i++)
    if (in->types[i].name && policy_name_eq(in->types[i].name, name))
      return &in->types[i];
  return NULL;
}

const policy_estimate_t *policy_est_find(const policy_estimates_t *e,
                                         const char *type, const char *phase) {
  for (size_t i = 0; i < e->n; i++)
    if (policy_name_eq(e->est[i].type, type) &&
        policy_name_eq(e->est[i].phase, phase))
      return &e->est[i];
  return NULL;
}

/* Measured speed of `type` in `phase`, extrapolated from another phase of
 * the same type when needed (scaled by how the other measured types
 * differ between the two phases).  0, or PM_ENOENT when never measured. */
static int speed_measured(const policy_estimates_t *e, const char *type,
                          const char *phase, policy_speed_t *out) {
  const policy_estimate_t *x = policy_est_find(e, type, phase);
  policy_speed_t r = {{0, 0, 0}, 1, 0, 0};
  if (x) {
    r.spp[0] = x->s_per_sample;
    r.spp[1] = x->s_per_sample_lo;
    r.spp[2] = x->s_per_sample_hi;
    r.settled = x->settled;
    *out = r;
    return 0;
  }
  const policy_estimate_t *q = NULL; /* the type's best-measured phase */
  for (size_t i = 0; i < e->n; i++)
    if (policy_name_eq(e->est[i].type, type) &&
        (!q || e->est[i].n_used > q->n_used))
      q = &e->est[i];
  if (!q || !(q->s_per_sample > 0)) return PM_ENOENT;
  double logr = 0;
  int k = 0;
  for (size_t i = 0; i < e->n; i++) {
    const policy_estimate_t *a = &e->est[i];
    if (!policy_name_eq(a->phase, phase)) continue;
    const policy_estimate_t *b = policy_est_find(e, a->type, q->phase);
    if (!b || !(a->s_per_sample > 0) || !(b->s_per_sample > 0)) continue;
    logr += log(a->s_per_sample / b->s_per_sample);
    k++;
  }
  double ratio = k ? exp(logr / k) : 1;
  r.spp[0] = q->s_per_sample * ratio;
  r.spp[1] = q->s_per_sample_lo * ratio;
  r.spp[2] = q->s_per_sample_hi * ratio;
  r.settled = q->settled;
  r.extrapolated = 1;
  *out = r;
  return 0;
}

int policy_speed(const policy_input_t *in, const policy_cfg_t *cfg,
                 const policy_estimates_t *e, const char *type,
                 const char *phase, policy_speed_t *out) {
  if (speed_measured(e, type, phase, out) == 0) return 0;
  /* Never measured: s/sample is inversely proportional to the catalog's
   * speed hint, calibrated on every measured type that has a hint. */
  const policy_type_t *t = policy_type_find(in, type);
  if (!t || !(t->speed_hint > 0)) return PM_ENOENT;
  double logk = 0;
  int k = 0;
  for (size_t i = 0; i < in->n_types; i++) {
    const policy_type_t *s = &in->types[i];
    policy_speed_t ms;
    if (s == t || !(s->speed_hint > 0) || !s->name) continue;
    if (speed_measured(e, s->name, phase, &ms) || !(ms.spp[0] > 0)) continue;
    logk += log(ms.spp[0] * s->speed_hint);
    k++;
  }
  if (!k) return PM_ENOENT;
  double u = cfg->hint_uncertainty >= 1 ? cfg->hint_uncertainty : 1;
  double spp = exp(logk / k) / t->speed_hint;
  policy_speed_t r = {{spp, spp / u, spp * u}, 0, 0, 0};
  *out = r;
  return 0;
}

static double granule(const policy_type_t *t) {
  return t->billing_granularity_s > 0 ? t->billing_granularity_s : 1;
}

/* Seconds billed for a node alive d seconds: whole granules, at least one
 * once requested, and at least the type's minimum (a cloud's 60 s minimum
 * for per-second billing makes a short-lived replacement cost a minute). */
static double billed_s(double d, double g, double min_s) {
  if (d <= 0) return 0;
  double k = ceil(d / g - 1e-9);
  double b = (k < 1 ? 1 : k) * g;
  return b < min_s ? min_s : b;
}

/* Cost from now of a node requested at req and terminated at end. */
static double node_cost(const policy_type_t *t, double req, double now,
                        double end) {
  double g = granule(t), m = t->billing_minimum_s > 0 ? t->billing_minimum_s : 0;
  double b = billed_s(end - req, g, m) - billed_s(now - req, g, m);
  return b > 0 ? b * t->price_usd_per_hour / 3600.0 : 0;
}

static double global_batch(const policy_input_t *in, int n) {
  return in->scaling == POLICY_SCALE_RANK_BATCH ? in->batch * n : in->batch;
}

static double rank_batch(const policy_input_t *in, int n) {
  return in->scaling == POLICY_SCALE_RANK_BATCH ? in->batch : in->batch / n;
}

/* Runs phases from the first with work left for at most d seconds with
 * the given PI times; consumes rem (samples) and returns the time used. */
static double run_for(double *rem, size_t np, const double *pi_s,
                      double global, double d) {
  double used = 0;
  for (size_t p = 0; p < np; p++) {
    if (rem[p] <= 0) continue;
    double t = rem[p] / global * pi_s[p];
    if (used + t <= d) {
      used += t;
      rem[p] = 0;
    } else {
      rem[p] -= (d - used) / pi_s[p] * global;
      return d;
    }
  }
  return used;
}

int policy_current_phase(const policy_input_t *in) {
  for (size_t p = 0; p < in->n_phases; p++)
    if (in->phases[p].iters_done < in->phases[p].iters_total) return (int)p;
  return -1;
}

int policy_input_check(const policy_input_t *in, const policy_cfg_t *cfg) {
  if (!in || !cfg) return PM_EINVAL;
  if (!isfinite(in->now_s) || !(in->batch > 0) || !isfinite(in->spent_usd) ||
      !(in->checkpoint_s >= 0) || !(in->restart_s >= 0) ||
      !isfinite(in->last_change_s))
    return PM_EINVAL;
  if (in->n_nodes < 1 || in->n_nodes > POLICY_MAX_NODES || !in->nodes)
    return PM_EINVAL;
  if (in->n_phases < 1 || in->n_phases > POLICY_MAX_PHASES || !in->phases)
    return PM_EINVAL;
  if (in->n_types < 1 || in->n_types > POLICY_MAX_TYPES || !in->types)
    return PM_EINVAL;
  if (in->scaling != POLICY_SCALE_GLOBAL_BATCH &&
      in->scaling != POLICY_SCALE_RANK_BATCH)
    return PM_EINVAL;
  for (size_t i = 0; i < in->n_types; i++) {
    const policy_type_t *t = &in->types[i];
    if (!t->name || !(t->price_usd_per_hour >= 0) || !(t->setup_s >= 0) ||
        !isfinite(t->billing_granularity_s) || !(t->billing_minimum_s >= 0) ||
        !isfinite(t->billing_minimum_s) || !(t->speed_hint >= 0) ||
        t->max_nodes < 0)
      return PM_EINVAL;
  }
  for (size_t i = 0; i < in->n_nodes; i++)
    if (!in->nodes[i].type || !policy_type_find(in, in->nodes[i].type) ||
        !isfinite(in->nodes[i].requested_s))
      return PM_EINVAL;
  for (size_t p = 0; p < in->n_phases; p++)
    if (!(in->phases[p].iters_total >= 0) || !(in->phases[p].iters_done >= 0))
      return PM_EINVAL;
  if (cfg->min_nodes < 0 || cfg->max_nodes < 0 ||
      (cfg->max_nodes && cfg->min_nodes > cfg->max_nodes) ||
      !(cfg->margin_rel >= 0) || !(cfg->flap_factor >= 1) ||
      !(cfg->min_dwell_s >= 0) || cfg->early_pis < 0 ||
      !(cfg->early_margin_rel >= 0) || (unsigned)cfg->kind > POLICY_CLAP_BOT ||
      (unsigned)cfg->objective > POLICY_MIN_TIME_BUDGET)
    return PM_EINVAL;
  return 0;
}

/* PI time of a node set in each phase from p0 for speed variant v.  The
 * slowest rank sets the pace of a synchronous data-parallel step. */
static int pi_times(const policy_input_t *in, const policy_cfg_t *cfg,
                    const policy_estimates_t *e, const char *const *types,
                    int ntypes, int n, int p0, int v, double *pi_s,
                    double *compute0_s, policy_prediction_t *flags) {
  for (size_t p = (size_t)p0; p < in->n_phases; p++) {
    double worst = 0;
    for (int i = 0; i < ntypes; i++) {
      policy_speed_t sp;
      int rc = policy_speed(in, cfg, e, types[i], in->phases[p].name, &sp);
      if (rc) return rc;
      if (sp.spp[v] > worst) worst = sp.spp[v];
      if (flags) {
        if (!sp.measured) flags->measured = 0;
        if ((int)p == p0 && !sp.settled) flags->settled = 0;
        if ((int)p != p0 && sp.extrapolated) flags->extrapolated = 1;
        if ((int)p == p0 && sp.extrapolated) flags->settled = 0;
      }
    }
    double compute = worst * rank_batch(in, n);
    pi_s[p] = compute + policy_comm_predict(&e->comm, n);
    if ((int)p == p0 && compute0_s) *compute0_s = compute;
  }
  return 0;
}

int policy_predict_change(const policy_input_t *in, const policy_cfg_t *cfg,
                          const policy_estimates_t *e,
                          const policy_change_t *ch,
                          policy_prediction_t *out) {
  int p0 = policy_current_phase(in);
  if (p0 < 0) return PM_ESTATE;
  int n_now = (int)in->n_nodes, kept = 0;
  const char *old_types[POLICY_MAX_NODES], *new_types[POLICY_MAX_NODES + 1];
  for (int i = 0; i < n_now; i++) {
    old_types[i] = in->nodes[i].type;
    if (ch->keep[i]) new_types[kept++] = in->nodes[i].type;
  }
  int n_new = kept + ch->add_count, nt_new = kept;
  if (ch->add_count > 0) {
    if (!ch->add_type) return PM_EINVAL;
    new_types[nt_new++] = ch->add_type->name;
  }
  if (n_new < 1 || ch->add_count < 0) return PM_EINVAL;

  policy_prediction_t r;
  memset(&r, 0, sizeof r);
  r.measured = 1;
  r.settled = 1;
  r.nodes = n_new;
  r.reused_nodes = kept;
  r.new_nodes = ch->add_count;
  r.removed_nodes = n_now - kept;
  r.is_stay = (kept == n_now && ch->add_count == 0);
  /* The type name when the resulting cluster is homogeneous. */
  const char *ht = nt_new ? new_types[0] : "";
  for (int i = 1; i < nt_new; i++)
    if (!policy_name_eq(new_types[i], ht)) ht = "";
  policy_name_copy(r.type, ht);

  double G_now = global_batch(in, n_now), G_new = global_batch(in, n_new);
  double setup = ch->add_count > 0 ? ch->add_type->setup_s : 0;
  double ckpt = r.is_stay ? 0 : in->checkpoint_s;
  double down = r.is_stay ? 0 : in->checkpoint_s + in->restart_s;
  double T[3], C[3];
  for (int v = 0; v < 3; v++) {
    double pi_old[POLICY_MAX_PHASES], pi_new[POLICY_MAX_PHASES];
    double rem[POLICY_MAX_PHASES] = {0};
    double c_old = 0, c_new = 0; /* compute part in phase p0 */
    /* Both sets' speeds count for the flags: the old set trains while
     * the new nodes boot. */
    int rc = pi_times(in, cfg, e, old_types, n_now, n_now, p0, v, pi_old,
                      &c_old, v == 0 ? &r : NULL);
    if (rc) return rc;
    rc = pi_times(in, cfg, e, new_types, nt_new, n_new, p0, v, pi_new, &c_new,
                  v == 0 ? &r : NULL);
    if (rc) return rc;
    for (size_t p = (size_t)p0; p < in->n_phases; p++) {
      double it = in->phases[p].iters_total - in->phases[p].iters_done;
      rem[p] = it > 0 ? it * G_now : 0;
    }
    double end, cost = 0;
    if (r.is_stay) {
      end = in->now_s + run_for(rem, in->n_phases, pi_old, G_now, INFINITY);
      for (int i = 0; i < n_now; i++)
        cost += node_cost(policy_type_find(in, in->nodes[i].type),
                          in->nodes[i].requested_s, in->now_s, end);
    } else {
      double used = run_for(rem, in->n_phases, pi_old, G_now, setup);
      int left = 0;
      for (size_t p = 0; p < in->n_phases; p++) left |= rem[p] > 0;
      if (!left) { /* the job ends before the new nodes are ready */
        end = in->now_s + used;
        for (int i = 0; i < n_now; i++)
          cost += node_cost(policy_type_find(in, in->nodes[i].type),
                            in->nodes[i].requested_s, in->now_s, end);
        if (ch->add_count > 0)
          cost += ch->add_count *
                  node_cost(ch->add_type, in->now_s, in->now_s, end);
      } else {
        double t_switch = in->now_s + setup, t_leave = t_switch + ckpt;
        end = t_switch + down +
              run_for(rem, in->n_phases, pi_new, G_new, INFINITY);
        for (int i = 0; i < n_now; i++)
          cost += node_cost(policy_type_find(in, in->nodes[i].type),
                            in->nodes[i].requested_s, in->now_s,
                            ch->keep[i] ? end : t_leave);
        if (ch->add_count > 0)
          cost += ch->add_count *
                  node_cost(ch->add_type, in->now_s, in->now_s, end);
      }
    }
    T[v] = end - in->now_s;
    C[v] = cost;
    if (v == 0) {
      r.pi_s = pi_new[p0];
      r.compute_s = c_new;
      r.comm_s = pi_new[p0] - c_new;
    }
  }
  r.setup_s = setup;
  r.downtime_s = down;
  r.time_s = T[0];
  r.end_s = in->now_s + T[0];
  r.cost_usd = C[0];
  r.total_usd = in->spent_usd + C[0];
  r.time_lo_s = T[1];
  r.cost_lo_usd = C[1];
  r.time_hi_s = T[2];
  r.cost_hi_usd = C[2];
  r.feasible = 1;
  if (cfg->objective == POLICY_MIN_COST_DEADLINE && cfg->deadline_s > 0)
    r.feasible = r.end_s <= cfg->deadline_s;
  if (cfg->objective == POLICY_MIN_TIME_BUDGET && cfg->budget_usd > 0)
    r.feasible = r.total_usd <= cfg->budget_usd;
  *out = r;
  return 0;
}

int policy_predict(const policy_input_t *in, const policy_cfg_t *cfg,
                   const policy_estimates_t *est, const char *type,
                   int nodes, policy_prediction_t *out) {
  if (!est || !out) return PM_EINVAL;
  int rc = policy_input_check(in, cfg);
  if (rc) return rc;
  policy_change_t ch;
  memset(&ch, 0, sizeof ch);
  if (!type) {
    for (size_t i = 0; i < in->n_nodes; i++) ch.keep[i] = 1;
  } else {
    const policy_type_t *t = policy_type_find(in, type);
    if (!t || nodes < 1) return PM_EINVAL;
    int kept = 0;
    for (size_t i = 0; i < in->n_nodes && kept < nodes; i++)
      if (policy_name_eq(in->nodes[i].type, type)) {
        ch.keep[i] = 1;
        kept++;
      }
    ch.add_type = t;
    ch.add_count = nodes - kept;
  }
  return policy_predict_change(in, cfg, est, &ch, out);
}
