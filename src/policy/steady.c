/* steady.c - steady-state detection and estimation of one PI series.
 *
 * The first PIs after a start or a resume are slower (caches, allocator,
 * JIT, lazy init) and the policy must not extrapolate them: MSER drops the
 * warm-up, a changepoint search catches undeclared level changes, and a
 * t-interval on batch means bounds the estimate.  O(n), no allocation.
 */
#include "policy/policy.h"

#include <math.h>

#include "paramount.h"
#include "policy/policy_int.h"

#define PI_ 3.14159265358979323846

double view_at(const policy_view_t *v, size_t i) {
  if (v->x) return v->x[i];
  const policy_pi_t *p = &v->pis[i];
  if (v->what == VIEW_COMM_S) return p->comm_s;
  double s = p->samples > 0 ? p->samples : v->batch_per_rank;
  return p->compute_s / s;
}

void policy_steady_cfg_default(policy_steady_cfg_t *cfg) {
  if (!cfg) return;
  cfg->confidence = 0.95;
  cfg->batch = 5;
  cfg->min_steady = 10;
  cfg->max_rel_halfwidth = 0.05;
  cfg->level_min_rel = 0.05;
  cfg->level_z = 5.0;
}

/* Acklam's rational approximation of the standard normal quantile
 * (relative error < 1.2e-9), good enough for confidence intervals. */
static double normal_quantile(double p) {
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                             -2.759285104469687e+02, 1.383577518672690e+02,
                             -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                             -1.556989798598866e+02, 6.680131188771972e+01,
                             -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                             -2.400758277161838e+00, -2.549732539343734e+00,
                             4.374664141464968e+00, 2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01,
                             2.445134137142996e+00, 3.754408661907416e+00};
  const double plow = 0.02425, phigh = 1 - plow;
  if (p <= 0) return -INFINITY;
  if (p >= 1) return INFINITY;
  if (p < plow) {
    double q = sqrt(-2 * log(p));
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q +
            c[5]) /
           ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  if (p > phigh) return -normal_quantile(1 - p);
  double q = p - 0.5, r = q * q;
  return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r +
          a[5]) *
         q /
         (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

double policy_t_quantile(double confidence, double df) {
  if (!(confidence > 0 && confidence < 1) || !(df > 0)) return NAN;
  double p = 0.5 + confidence / 2; /* upper tail point */
  if (df == 1) return tan(PI_ * (p - 0.5));
  if (df == 2) return (2 * p - 1) / sqrt(2 * p * (1 - p));
  double z = normal_quantile(p);
  double z2 = z * z, z3 = z2 * z, z5 = z3 * z2, z7 = z5 * z2, z9 = z7 * z2;
  double g1 = (z3 + z) / 4;
  double g2 = (5 * z5 + 16 * z3 + 3 * z) / 96;
  double g3 = (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / 384;
  double g4 = (79 * z9 + 776 * z7 + 1482 * z5 - 1920 * z3 - 945 * z) / 92160;
  return z + g1 / df + g2 / (df * df) + g3 / (df * df * df) +
         g4 / (df * df * df * df);
}

/* MSER on batch means: the truncation d (in batches) minimising
 * SS(d) / (nb - d)^2, searched over the first half.  Whether the warm-up
 * is really over is drifting()'s call. */
static size_t mser(const policy_view_t *x, size_t n, size_t batch) {
  size_t nb = n / batch;
  if (nb < 2) return 0;
  size_t dmax = nb / 2, best_d = 0;
  double best = INFINITY, s = 0, s2 = 0;
  /* Walk d from the end so that the suffix sums accumulate. */
  for (size_t j = nb; j-- > 0;) {
    double y = 0;
    for (size_t i = 0; i < batch; i++) y += view_at(x, j * batch + i);
    y /= (double)batch;
    s += y;
    s2 += y * y;
    if (j > dmax) continue;
    double k = (double)(nb - j);
    double ss = s2 - s * s / k;
    if (ss < 0) ss = 0;
    double stat = ss / (k * k);
    if (stat <= best) { /* ties: prefer the shorter truncation */
      best = stat;
      best_d = j;
    }
  }
  return best_d * batch;
}

/* The best single split of y[0..m) into two levels; returns its index, or
 * 0 when no split passes both tests. */
static size_t level_split(const policy_view_t *v, size_t off, size_t m, size_t min_seg,
                          double z_min, double rel_min) {
  if (m < 2 * min_seg || m < 3) return 0;
  double tot = 0, d2 = 0;
  for (size_t i = 0; i < m; i++) {
    double yi = view_at(v, off + i);
    tot += yi;
    if (i) {
      double dy = yi - view_at(v, off + i - 1);
      d2 += dy * dy;
    }
  }
  /* Noise from first differences: a level step inflates only one term. */
  double sigma = sqrt(d2 / (2.0 * (double)(m - 1)));
  size_t best_k = 0;
  double best_z = 0, left = 0;
  for (size_t k = 1; k < m; k++) {
    left += view_at(v, off + k - 1);
    if (k < min_seg || m - k < min_seg) continue;
    double m1 = left / (double)k, m2 = (tot - left) / (double)(m - k);
    double se = sigma * sqrt(1.0 / (double)k + 1.0 / (double)(m - k));
    double z = se > 0 ? fabs(m2 - m1) / se : (m1 != m2 ? INFINITY : 0);
    double rel = m1 != 0 ? fabs(m2 - m1) / fabs(m1) : 0;
    if (z > best_z && rel >= rel_min) {
      best_z = z;
      best_k = k;
    }
  }
  return best_z >= z_min ? best_k : 0;
}

/* Do y[off..off+m) still drift?  Halves compared with a z test on the
 * first-difference noise (3 standard errors and a 1% step). */
static int drifting(const policy_view_t *v, size_t off, size_t m) {
  if (m < 4) return 0;
  size_t h = m / 2;
  double s1 = 0, s2 = 0, d2 = 0;
  for (size_t i = 0; i < m; i++) {
    double y = view_at(v, off + i);
    if (i < h) s1 += y; else s2 += y;
    if (i) {
      double dy = y - view_at(v, off + i - 1);
      d2 += dy * dy;
    }
  }
  double m1 = s1 / (double)h, m2 = s2 / (double)(m - h);
  double sigma = sqrt(d2 / (2.0 * (double)(m - 1)));
  double se = sigma * sqrt(1.0 / (double)h + 1.0 / (double)(m - h));
  double mean = (s1 + s2) / (double)m;
  return fabs(m1 - m2) >= 3 * se && fabs(m1 - m2) >= 0.01 * fabs(mean);
}

int policy_estimate_steady(const double *x, size_t n,
                           const policy_steady_cfg_t *cfg,
                           policy_steady_t *out) {
  if (!cfg || !out || (n && !x)) return PM_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return PM_EINVAL;
  policy_view_t v = {x, NULL, 0, 0};
  return policy_steady_view(&v, n, cfg, out);
}

int policy_steady_view(const policy_view_t *x, size_t n,
                       const policy_steady_cfg_t *cfg, policy_steady_t *out) {
  if (cfg->batch < 1 || !(cfg->confidence > 0 && cfg->confidence < 1) ||
      !(cfg->max_rel_halfwidth > 0) || !(cfg->level_z > 0) ||
      !(cfg->level_min_rel >= 0))
    return PM_EINVAL;
  policy_steady_t r = {0};
  r.n = n;
  size_t w = mser(x, n, cfg->batch);
  size_t start = w;
  size_t min_seg = 2 * cfg->batch;
  if (min_seg < cfg->min_steady / 2) min_seg = cfg->min_steady / 2;
  for (int guard = 0; guard < 16; guard++) {
    size_t k = level_split(x, start, n - start, min_seg, cfg->level_z,
                           cfg->level_min_rel);
    if (!k) break;
    start += k;
    r.level_changes++;
  }
  size_t m = n - start;
  double sum = 0, ss = 0;
  for (size_t i = start; i < n; i++) sum += view_at(x, i);
  double mean = m ? sum / (double)m : 0;
  for (size_t i = start; i < n; i++) {
    double d = view_at(x, i) - mean;
    ss += d * d;
  }
  double sd = m > 1 ? sqrt(ss / (double)(m - 1)) : 0;

  /* Batch means tame the autocorrelation of consecutive PIs; up to 20
   * batches, oldest leftover samples dropped from the CI only. */
  size_t nb = m / cfg->batch;
  if (nb > 20) nb = 20;
  double hw;
  if (nb >= 2) {
    size_t bs = m / nb, off = start + (m - nb * bs);
    double bsum = 0, bss = 0;
    for (size_t b = 0; b < nb; b++) {
      double y = 0;
      for (size_t i = 0; i < bs; i++) y += view_at(x, off + b * bs + i);
      y /= (double)bs;
      bsum += y;
      bss += y * y;
    }
    double bmean = bsum / (double)nb;
    double bvar = (bss - (double)nb * bmean * bmean) / (double)(nb - 1);
    if (bvar < 0) bvar = 0;
    hw = policy_t_quantile(cfg->confidence, (double)(nb - 1)) *
         sqrt(bvar / (double)nb);
  } else if (m >= 2) {
    hw = policy_t_quantile(cfg->confidence, (double)(m - 1)) * sd /
         sqrt((double)m);
  } else {
    hw = fabs(mean); /* one sample: claim nothing */
  }

  r.warmup = w;
  r.level_start = start;
  r.n_used = m;
  r.n_batches = nb;
  r.mean = mean;
  r.lo = mean - hw;
  r.hi = mean + hw;
  r.rel_halfwidth = mean != 0 ? hw / fabs(mean) : (hw > 0 ? 1 : 0);
  r.stddev = sd;
  /* MSER alone cannot tell "warm-up over" from "still drifting" (its
   * minimum hits the search edge in both a long warm-up and plain noise),
   * so the retained samples must show no drift between their halves. */
  r.settled = !drifting(x, start, m) && m >= cfg->min_steady && m >= 2;
  r.steady = r.settled && r.rel_halfwidth <= cfg->max_rel_halfwidth;
  *out = r;
  return 0;
}
