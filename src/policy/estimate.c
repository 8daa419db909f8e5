/* estimate.c - per-type, per-phase speed estimates and the comm model.
 *
 * Turns raw PI series (one per rank, launch and phase) into what the cost
 * model needs: compute seconds per sample of one rank of each type in each
 * phase, with a confidence interval, and an allreduce time model fitted to
 * every cluster size measured.  Also the configuration defaults and names.
 */
#include <math.h>
#include <string.h>

#include "paramount.h"
#include "policy/policy.h"
#include "policy/policy_int.h"

int policy_name_eq(const char *a, const char *b) {
  if (!a) a = "";
  if (!b) b = "";
  return strcmp(a, b) == 0;
}

void policy_name_copy(char *dst, const char *src) {
  if (!src) src = "";
  size_t n = strlen(src);
  if (n >= POLICY_NAME_MAX) n = POLICY_NAME_MAX - 1;
  memcpy(dst, src, n);
  dst[n] = '\0';
}

void policy_cfg_default(policy_cfg_t *cfg) {
  if (!cfg) return;
  memset(cfg, 0, sizeof *cfg);
  cfg->kind = POLICY_PARAMOUNT;
  cfg->objective = POLICY_MIN_COST;
  cfg->margin_rel = 0.05;
  cfg->flap_factor = 2.0;
  cfg->min_dwell_s = 0;
  cfg->early_pis = 4;
  cfg->early_margin_rel = 0.2;
  cfg->probe_unmeasured = 0;
  cfg->hint_uncertainty = 1.5;
  cfg->clapbot_period_s = 300;
  policy_steady_cfg_default(&cfg->steady);
}

static const char *const kind_names[] = {"paramount", "static", "clap-bot"};
static const char *const objective_names[] = {
    "min-cost", "min-time", "min-cost-deadline", "min-time-budget"};
static const char *const action_names[] = {"stay", "wait", "switch", "probe"};

int policy_kind_from_name(const char *name, policy_kind_t *out) {
  if (!name || !out) return PM_EINVAL;
  for (int i = 0; i < 3; i++)
    if (strcmp(name, kind_names[i]) == 0) {
      *out = (policy_kind_t)i;
      return 0;
    }
  return PM_ENOENT;
}

const char *policy_kind_name(policy_kind_t kind) {
  return (unsigned)kind < 3 ? kind_names[kind] : "?";
}

int policy_objective_from_name(const char *name, policy_objective_t *out) {
  if (!name || !out) return PM_EINVAL;
  for (int i = 0; i < 4; i++)
    if (strcmp(name, objective_names[i]) == 0) {
      *out = (policy_objective_t)i;
      return 0;
    }
  return PM_ENOENT;
}

const char *policy_objective_name(policy_objective_t objective) {
  return (unsigned)objective < 4 ? objective_names[objective] : "?";
}

const char *policy_action_name(policy_action_t action) {
  return (unsigned)action < 4 ? action_names[action] : "?";
}

double policy_comm_predict(const policy_comm_model_t *m, int nodes) {
  if (!m || nodes <= 1) return 0;
  double n = nodes;
  return m->bw_s * 2 * (n - 1) / n + m->lat_s * (n - 1);
}

static int series_valid(const policy_series_t *s) {
  if (!s->type || s->nodes < 1 || (s->n_pis && !s->pis)) return 0;
  for (size_t i = 0; i < s->n_pis; i++) {
    const policy_pi_t *p = &s->pis[i];
    if (!isfinite(p->t_s) || !isfinite(p->compute_s) || !isfinite(p->comm_s) ||
        !isfinite(p->samples) || p->compute_s < 0 || p->samples < 0)
      return 0;
    if (p->samples == 0 && !(s->batch_per_rank > 0)) return 0;
  }
  return 1;
}

/* One series' speed and its comm mean over the same (current-level) PIs. */
typedef struct {
  policy_steady_t st;
  double comm_mean;
  double raw_mean;
} series_est_t;

static int series_estimate(const policy_series_t *s,
                           const policy_steady_cfg_t *cfg, series_est_t *out) {
  policy_view_t v = {NULL, s->pis, s->batch_per_rank, VIEW_S_PER_SAMPLE};
  int rc = policy_steady_view(&v, s->n_pis, cfg, &out->st);
  if (rc) return rc;
  double c = 0, raw = 0;
  for (size_t i = 0; i < s->n_pis; i++) raw += view_at(&v, i);
  for (size_t i = out->st.level_start; i < s->n_pis; i++) c += s->pis[i].comm_s;
  out->comm_mean = out->st.n_used ? c / (double)out->st.n_used : 0;
  out->raw_mean = s->n_pis ? raw / (double)s->n_pis : 0;
  return 0;
}

/* Degrees of freedom behind a series' interval, as policy_steady_view
 * computed it. */
static double series_df(const policy_steady_t *st) {
  if (st->n_batches >= 2) return (double)st->n_batches - 1;
  return st->n_used >= 2 ? (double)st->n_used - 1 : 0;
}

static int pool_key(const policy_input_t *in, const policy_cfg_t *cfg,
                    const char *type, const char *phase,
                    policy_estimate_t *out) {
  /* The latest launch with a settled series of the key, else the latest. */
  int best_launch = -1, best_settled = 0;
  for (size_t i = 0; i < in->n_series; i++) {
    const policy_series_t *s = &in->series[i];
    if (!s->n_pis || !policy_name_eq(s->type, type) ||
        !policy_name_eq(s->phase, phase))
      continue;
    series_est_t e;
    int rc = series_estimate(s, &cfg->steady, &e);
    if (rc) return rc;
    int better = e.st.settled > best_settled ||
                 (e.st.settled == best_settled && s->launch > best_launch);
    if (better) {
      best_launch = s->launch;
      best_settled = e.st.settled;
    }
  }
  policy_estimate_t r;
  memset(&r, 0, sizeof r);
  policy_name_copy(r.type, type);
  policy_name_copy(r.phase, phase);
  r.launch = best_launch;
  r.steady = 1;
  r.settled = 1;
  double w = 0, m = 0, comm = 0, raw = 0, raw_n = 0, df = 0;
  double se2 = 0; /* sum of n_used^2 * se^2, normalised below */
  for (size_t i = 0; i < in->n_series; i++) {
    const policy_series_t *s = &in->series[i];
    if (!s->n_pis || s->launch != best_launch ||
        !policy_name_eq(s->type, type) || !policy_name_eq(s->phase, phase))
      continue;
    series_est_t e;
    int rc = series_estimate(s, &cfg->steady, &e);
    if (rc) return rc;
    double nu = (double)e.st.n_used, sdf = series_df(&e.st);
    double se = 0;
    if (sdf > 0) {
      se = (e.st.hi - e.st.mean) / policy_t_quantile(cfg->steady.confidence, sdf);
    } else {
      se = fabs(e.st.mean);
    }
    r.nodes = s->nodes;
    r.n_series++;
    r.n_pis += s->n_pis;
    r.n_used += e.st.n_used;
    if (e.st.warmup > r.warmup_pis) r.warmup_pis = e.st.warmup;
    r.level_changes += e.st.level_changes;
    r.settled = r.settled && e.st.settled;
    w += nu;
    m += nu * e.st.mean;
    comm += nu * e.comm_mean;
    se2 += nu * nu * se * se;
    df += sdf;
    raw += e.raw_mean * (double)s->n_pis;
    raw_n += (double)s->n_pis;
  }
  if (w > 0) {
    r.s_per_sample = m / w;
    r.comm_s = comm / w;
    double se = sqrt(se2) / w;
    double hw = df > 0 ? policy_t_quantile(cfg->steady.confidence, df) * se
                       : r.s_per_sample;
    r.s_per_sample_lo = r.s_per_sample - hw;
    r.s_per_sample_hi = r.s_per_sample + hw;
    r.rel_halfwidth = r.s_per_sample > 0 ? hw / r.s_per_sample : 1;
    r.steady = r.settled && r.rel_halfwidth <= cfg->steady.max_rel_halfwidth;
  } else { /* too few PIs for any estimate: the raw mean, unsteady */
    r.s_per_sample = raw_n > 0 ? raw / raw_n : 0;
    r.s_per_sample_lo = 0;
    r.s_per_sample_hi = 2 * r.s_per_sample;
    r.rel_halfwidth = 1;
    r.steady = 0;
    r.settled = 0;
  }
  if (r.s_per_sample_lo < 0) r.s_per_sample_lo = 0;
  r.raw_s_per_sample = raw_n > 0 ? raw / raw_n : 0;
  if (!(r.s_per_sample > 0)) r.steady = r.settled = 0;
  *out = r;
  return 0;
}

/* Least squares of c = bw * f1(n) + lat * f2(n) with both >= 0. */
static void comm_fit(const double *n, const double *c, int k,
                     policy_comm_model_t *out) {
  policy_comm_model_t m = {k, 0, 0};
  double a11 = 0, a12 = 0, a22 = 0, b1 = 0, b2 = 0;
  int distinct = 0;
  for (int i = 0; i < k; i++) {
    double f1 = 2 * (n[i] - 1) / n[i], f2 = n[i] - 1;
    a11 += f1 * f1;
    a12 += f1 * f2;
    a22 += f2 * f2;
    b1 += f1 * c[i];
    b2 += f2 * c[i];
    if (i && n[i] != n[0]) distinct = 1;
  }
  double det = a11 * a22 - a12 * a12;
  if (distinct && det > 1e-12 * a11 * a22) {
    m.bw_s = (b1 * a22 - b2 * a12) / det;
    m.lat_s = (a11 * b2 - a12 * b1) / det;
  }
  if (!distinct || !(det > 1e-12 * a11 * a22) || m.bw_s < 0 || m.lat_s < 0) {
    /* One size measured (or a negative fit): bandwidth term only, which
     * is the dominant one for gradient-sized messages. */
    m.bw_s = a11 > 0 ? b1 / a11 : 0;
    m.lat_s = 0;
    if (m.bw_s < 0) m.bw_s = 0;
  }
  *out = m;
}

int policy_estimate(const policy_input_t *in, const policy_cfg_t *cfg,
                    policy_estimates_t *out) {
  if (!in || !cfg || !out || (in->n_series && !in->series)) return PM_EINVAL;
  for (size_t i = 0; i < in->n_series; i++)
    if (!series_valid(&in->series[i])) return PM_EINVAL;

  /* Distinct (type, phase) keys, in order of first appearance. */
  const char *ktype[POLICY_MAX_ESTIMATES], *kphase[POLICY_MAX_ESTIMATES];
  size_t nk = 0;
  for (size_t i = 0; i < in->n_series; i++) {
    const policy_series_t *s = &in->series[i];
    if (!s->n_pis) continue;
    size_t j = 0;
    while (j < nk && !(policy_name_eq(ktype[j], s->type) &&
                       policy_name_eq(kphase[j], s->phase)))
      j++;
    if (j < nk) continue;
    if (nk == POLICY_MAX_ESTIMATES) return PM_ENOSPC;
    ktype[nk] = s->type;
    kphase[nk] = s->phase;
    nk++;
  }
  /* Comm points: per launch, the smallest current-level comm mean. */
  double pn[64], pc[64];
  int np = 0;
  for (size_t i = 0; i < in->n_series && np < 64; i++) {
    const policy_series_t *s = &in->series[i];
    if (!s->n_pis || s->nodes < 2) continue;
    int seen = 0;
    for (size_t j = 0; j < i; j++)
      if (in->series[j].n_pis && in->series[j].launch == s->launch) seen = 1;
    if (seen) continue;
    double best = INFINITY;
    int nodes = s->nodes;
    for (size_t j = i; j < in->n_series; j++) {
      const policy_series_t *t = &in->series[j];
      if (!t->n_pis || t->launch != s->launch) continue;
      series_est_t e;
      int rc = series_estimate(t, &cfg->steady, &e);
      if (rc) return rc;
      if (e.st.n_used && e.comm_mean < best) best = e.comm_mean;
    }
    if (isfinite(best)) {
      pn[np] = nodes;
      pc[np] = best;
      np++;
    }
  }

  /* Built in place: *out is the caller's and holds nothing to lose. */
  for (size_t j = 0; j < nk; j++) {
    int rc = pool_key(in, cfg, ktype[j], kphase[j], &out->est[j]);
    if (rc) return rc;
  }
  comm_fit(pn, pc, np, &out->comm);
  out->n = nk;
  return 0;
}
