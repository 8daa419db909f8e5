/* policy.h - Paramount's decision policy: pure functions from measurements,
 * prices and job progress to estimates, predictions and one decision.
 * No I/O, no clock reads, no allocation, no global state: time and prices
 * are inputs, so the same code serves the live controller, the simulator
 * and the table-driven tests.  Every pointer passed in is borrowed for the
 * duration of the call only; nothing is retained.  See docs/policy.md. */
#ifndef PM_POLICY_H
#define PM_POLICY_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define POLICY_NAME_MAX 64   /* bytes, NUL included, of a type/phase name */
#define POLICY_MAX_TYPES 16  /* catalog entries considered */
#define POLICY_MAX_PHASES 8  /* declared phases of a job */
#define POLICY_MAX_NODES 64  /* nodes of the current cluster */
#define POLICY_MAX_ESTIMATES (POLICY_MAX_TYPES * POLICY_MAX_PHASES)

/* ==== steady state ===================================================== */

typedef struct {
  double confidence;        /* two-sided CI level, e.g. 0.95 */
  size_t batch;             /* MSER batch size: 5 gives MSER-5 */
  size_t min_steady;        /* samples needed after truncation (settled) */
  double max_rel_halfwidth; /* CI half-width / mean to call a level steady */
  double level_min_rel;     /* smallest relative level change reported */
  double level_z;           /* changepoint threshold, in standard errors */
} policy_steady_cfg_t;

typedef struct {
  size_t n;             /* samples given */
  size_t warmup;        /* leading samples discarded as warm-up (MSER) */
  size_t level_start;   /* first sample of the current level (>= warmup) */
  int level_changes;    /* level changes found after the warm-up */
  size_t n_used;        /* samples behind the estimate: n - level_start */
  size_t n_batches;     /* batch means behind the t-interval */
  double mean;          /* estimate: mean of the current level */
  double lo, hi;        /* its confidence interval */
  double rel_halfwidth; /* (hi - lo) / 2 / mean */
  double stddev;        /* of the samples used */
  int settled;          /* warm-up over (no drift) and n_used >= min_steady */
  int steady;           /* settled and the CI is narrow (max_rel_halfwidth) */
} policy_steady_t;

void policy_steady_cfg_default(policy_steady_cfg_t *cfg);

/* Detects the end of the warm-up of x[0..n) with MSER (batch means of
 * cfg->batch; the truncation must fall in the first half), then level
 * changes in the rest (largest two-segment split, accepted when both the
 * z statistic and the relative step pass), and estimates the current level
 * with a Student t interval on batch means.  n == 0 is valid (not steady).
 * Returns 0, or PM_EINVAL (NULL pointers, non-finite samples, bad cfg). */
int policy_estimate_steady(const double *x, size_t n,
                           const policy_steady_cfg_t *cfg,
                           policy_steady_t *out);

/* Two-sided Student t quantile: t such that P(|T_df| <= t) = confidence.
 * Exact for df 1 and 2, Cornish-Fisher expansion above (error < 0.3%). */
double policy_t_quantile(double confidence, double df);

/* ==== inputs =========================================================== */

typedef struct {
  double t_s;       /* end of the PI, controller clock (any origin) */
  double compute_s; /* this rank's compute time */
  double comm_s;    /* this rank's communication + wait time */
  double samples;   /* samples this rank processed; 0: series batch_per_rank */
} policy_pi_t;

/* The PIs of one rank (one node) during one launch in one phase. */
typedef struct {
  const char *type;      /* instance type of the node */
  const char *phase;     /* declared phase; NULL or "" is the default phase */
  int launch;            /* 0 for the first launch, +1 at every restart */
  int nodes;             /* ranks of the cluster while measured */
  double batch_per_rank; /* samples per PI of this rank when pi.samples is 0 */
  const policy_pi_t *pis; /* borrowed, in iteration order */
  size_t n_pis;
} policy_series_t;

typedef struct {
  const char *name;
  double price_usd_per_hour;
  double billing_granularity_s; /* 1, 60, 3600...; <= 0 means 1 */
  double setup_s;               /* request -> ready: measured or estimated */
  double speed_hint;            /* relative speed (vCPUs x CPU share); 0: none */
  int max_nodes;                /* available nodes of the type; 0: no limit */
  double billing_minimum_s;     /* a node is billed at least this; 0: one granule
                                 * (last, so positional initializers stay valid) */
} policy_type_t;

typedef struct {
  const char *type;
  double requested_s; /* billing starts here (controller clock) */
} policy_node_t;

/* Phases in execution order; the current phase is the first not done. */
typedef struct {
  const char *name; /* NULL or "" is the default phase */
  double iters_total;
  double iters_done;
} policy_phase_t;

typedef enum {
  POLICY_SCALE_GLOBAL_BATCH = 0, /* global batch fixed: per-rank = batch/n */
  POLICY_SCALE_RANK_BATCH = 1    /* per-rank batch fixed: global = batch*n */
} policy_scaling_t;

typedef struct {
  double now_s;
  const policy_series_t *series; size_t n_series;
  const policy_type_t *types;    size_t n_types;  /* the catalog */
  const policy_node_t *nodes;    size_t n_nodes;  /* the current cluster */
  const policy_phase_t *phases;  size_t n_phases;
  policy_scaling_t scaling;
  double batch;          /* global (GLOBAL_BATCH) or per-rank samples per PI */
  double spent_usd;      /* billed so far, nodes already gone included */
  double checkpoint_s;   /* downtime parts of a switch, measured when known */
  double restart_s;      /* relaunch + init to the first PI */
  double last_change_s;  /* the current node set began training here */
  int n_switches;        /* switches made so far in this run */
} policy_input_t;

/* ==== configuration ==================================================== */

typedef enum {
  POLICY_PARAMOUNT = 0, /* "paramount": the model-based policy */
  POLICY_STATIC = 1,    /* "static": never changes the cluster */
  POLICY_CLAP_BOT = 2   /* "clap-bot": CLAP's add-best/stop-worst loop */
} policy_kind_t;

typedef enum {
  POLICY_MIN_COST = 0,          /* "min-cost" */
  POLICY_MIN_TIME = 1,          /* "min-time" */
  POLICY_MIN_COST_DEADLINE = 2, /* "min-cost-deadline" */
  POLICY_MIN_TIME_BUDGET = 3    /* "min-time-budget" */
} policy_objective_t;

typedef struct {
  policy_kind_t kind;
  policy_objective_t objective;
  double deadline_s;  /* absolute, controller clock (MIN_COST_DEADLINE) */
  double budget_usd;  /* total for the run (MIN_TIME_BUDGET) */
  int min_nodes;      /* bounds on the node count; 0: the current count */
  int max_nodes;
  double margin_rel;  /* gain needed, as a fraction of staying's objective */
  double flap_factor; /* margin multiplier per switch already made */
  double min_dwell_s; /* no switch sooner than this after last_change_s */
  int probe_unmeasured;    /* 1: may ask to probe a hinted type */
  double hint_uncertainty; /* hinted speed is within [1/u, u] of the hint */
  double clapbot_period_s; /* clap-bot acts at most once per period */
  policy_steady_cfg_t steady;
  /* Early switch (0: off): before the estimates settle, switch anyway when
   * the gain holds with every current type at the fastest and the target
   * at the slowest of its last early_pis PIs of the current launch (the
   * launch's first PI left out), by at least early_margin_rel of staying. */
  int early_pis;
  double early_margin_rel;
} policy_cfg_t;

void policy_cfg_default(policy_cfg_t *cfg);

/* Name <-> value.  The _from_name functions return 0 or PM_ENOENT; the
 * _name functions return static strings ("?" for unknown values). */
int policy_kind_from_name(const char *name, policy_kind_t *out);
const char *policy_kind_name(policy_kind_t kind);
int policy_objective_from_name(const char *name, policy_objective_t *out);
const char *policy_objective_name(policy_objective_t objective);

/* ==== estimates ======================================================== */

typedef struct {
  char type[POLICY_NAME_MAX];
  char phase[POLICY_NAME_MAX];
  int launch;           /* the launch whose series made the estimate */
  int nodes;            /* cluster size in that launch */
  int n_series;         /* series pooled (nodes of the type) */
  size_t n_pis;         /* PIs given */
  size_t n_used;        /* PIs behind the estimate */
  size_t warmup_pis;    /* discarded as warm-up (largest over series) */
  int level_changes;    /* undeclared level changes seen */
  int settled;          /* every pooled series settled (CI may be wide) */
  int steady;           /* settled, and the pooled CI is narrow */
  double s_per_sample;  /* compute seconds per sample of one rank */
  double s_per_sample_lo, s_per_sample_hi; /* its CI */
  double rel_halfwidth;
  double comm_s;        /* mean comm + wait per PI over the same PIs */
  double raw_s_per_sample; /* mean over every PI, warm-up included */
} policy_estimate_t;

/* comm(n) = bw_s * 2(n-1)/n + lat_s * (n-1): ring allreduce; 0 for n <= 1 */
typedef struct {
  int n_points;  /* (nodes, allreduce) points behind the fit */
  double bw_s;
  double lat_s;
} policy_comm_model_t;

typedef struct {
  policy_estimate_t est[POLICY_MAX_ESTIMATES];
  size_t n;
  policy_comm_model_t comm;
} policy_estimates_t;

/* One estimate per measured (type, phase), from the latest launch that has
 * a steady series of it (else the latest launch), pooled over its nodes;
 * plus the communication model fitted to the allreduce time of every
 * launch (the smallest comm among its ranks: the slowest rank waits least).
 * Returns 0, PM_EINVAL, or PM_ENOSPC (too many types x phases). */
int policy_estimate(const policy_input_t *in, const policy_cfg_t *cfg,
                    policy_estimates_t *out);

double policy_comm_predict(const policy_comm_model_t *m, int nodes);

/* ==== predictions ====================================================== */

typedef struct {
  char type[POLICY_NAME_MAX]; /* target type; "" for a mixed cluster */
  int nodes;
  int is_stay;
  int reused_nodes, new_nodes, removed_nodes;
  double setup_s;    /* new nodes' setup, the old ones still training */
  double downtime_s; /* checkpoint + restart */
  double pi_s;       /* PI time in the current phase after the change */
  double compute_s, comm_s; /* its parts */
  double time_s;     /* remaining wall time to the end of the job */
  double end_s;      /* now_s + time_s */
  double cost_usd;   /* remaining billed cost from now (marginal) */
  double total_usd;  /* spent_usd + cost_usd */
  double time_lo_s, cost_lo_usd; /* with every speed at its CI's fast end */
  double time_hi_s, cost_hi_usd; /* ... at its slow end */
  int feasible;      /* meets the deadline or budget of the objective */
  int measured;      /* no speed came from a catalog hint */
  int settled;       /* every speed used for the current phase is settled */
  int extrapolated;  /* a future phase's speed was extrapolated */
} policy_prediction_t;

/* Predicts the rest of the job if the cluster became `nodes` nodes of
 * `type` now (current nodes of that type are reused, make-before-break),
 * or, with type NULL, if it stays as is.  Returns 0, PM_EINVAL, or
 * PM_ENOENT when a needed speed is neither measured nor hinted. */
int policy_predict(const policy_input_t *in, const policy_cfg_t *cfg,
                   const policy_estimates_t *est, const char *type,
                   int nodes, policy_prediction_t *out);

/* ==== decision ========================================================= */

typedef enum {
  POLICY_STAY = 0,   /* confident that the current cluster is best */
  POLICY_WAIT = 1,   /* a change may pay but the data do not show it yet */
  POLICY_SWITCH = 2, /* reshape: add add_count of add_type, remove[] */
  POLICY_PROBE = 3   /* add one node of an unmeasured type to measure it */
} policy_action_t;

const char *policy_action_name(policy_action_t action);

typedef struct {
  policy_kind_t kind;
  policy_objective_t objective;
  policy_action_t action;
  const char *reason; /* static string */
  double now_s;
  double margin_rel;  /* effective margin (flap factor applied) */
  double gain;        /* objective(stay) - objective(best): USD or s */
  double gain_required;
  double gain_pessimistic; /* stay at its fast end - best at its slow end */
  int forced;         /* staying breaks the deadline/budget, best does not */
  int early;          /* switched on the early rule (cfg.early_pis) */
  double gain_early;  /* the early rule's gain: stay at the fast extremes
                       * minus the target at the slow ones (NaN: not tried) */
  char add_type[POLICY_NAME_MAX];
  int add_count;
  int remove[POLICY_MAX_NODES]; /* indices into input nodes */
  int n_remove;
  policy_prediction_t stay;
  policy_prediction_t target; /* the chosen (or best rejected) change */
  int has_target;
  policy_prediction_t per_type[POLICY_MAX_TYPES]; /* best count per type */
  size_t n_per_type;
  size_t n_candidates; /* configurations evaluated */
  policy_estimates_t estimates;
} policy_decision_t;

/* Runs the policy cfg->kind on the input.  Every outcome, "stay" included,
 * comes back in *out with the numbers that made it.  Returns 0, or
 * PM_EINVAL on malformed input (then *out is untouched). */
int policy_decide(const policy_input_t *in, const policy_cfg_t *cfg,
                  policy_decision_t *out);

/* ==== journaling (policy_json.c, links json-c) ========================= */

struct json_object;
/* *out: a new json-c object owned by the caller (json_object_put).
 * Returns 0 or PM_ENOMEM (then *out is NULL). */
int policy_decision_to_json(const policy_decision_t *d,
                            struct json_object **out);
/* Renders the same object as one line of JSON into buf[0..cap) with its
 * NUL; *len (optional) gets the length without the NUL.  Returns 0,
 * PM_ENOSPC when cap is too small (buf then holds ""), or PM_ENOMEM. */
int policy_decision_render(const policy_decision_t *d, char *buf, size_t cap,
                           size_t *len);

#ifdef __cplusplus
}
#endif
#endif /* PM_POLICY_H */
