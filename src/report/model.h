/* model.h - a run as the report sees it: the journal folded into nodes
 * with their lifecycle, launches, ranks, PIs, epochs, checkpoints,
 * decisions and switches, plus the figures derived from them.
 *
 * Internal to src/report.  Times are Unix seconds (NaN when the journal
 * does not say) on the controller's clock, except where a rank's own clock
 * is said; strings are copied, capped at MODEL_NAME_MAX.
 */
#ifndef PM_REPORT_MODEL_H
#define PM_REPORT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#define MODEL_NAME_MAX 128 /* bytes, NUL included, of an id/type/phase */
#define MODEL_REASON_MAX 256

typedef struct {
  char id[MODEL_NAME_MAX];
  char type[MODEL_NAME_MAX]; /* "" when only ranks named the node */
  double price_usd_per_hour, billing_granularity_s, billing_minimum_s;
  double requested_s, booted_s, staged_s, ready_s, terminated_s;
  double first_seen_s, last_seen_s; /* from rank events, for provider-less runs */
  double cost_usd;                  /* billed, after model_derive */
} model_node;

typedef struct {
  int launch;
  unsigned rank;
  int node; /* index into nodes, -1 when no hello named it */
  /* Its declared phases: a PI belongs to the one that starts latest at
   * or before its iteration (the later declaration on a tie). */
  struct model_decl { uint64_t first_iter; int phase; } *decls;
  size_t n_decls, cap_decls;
  double init_begin_s, init_end_s;
  double first_pi_begin_s;
  /* Its own clock against the controller's: the range of the times it
   * stamped, and its lead, max(its time - the controller's receive time),
   * a lower bound of its clock's offset.  NaN: no record of its clock. */
  double clock_min_s, clock_max_s, clock_lead_s;
  double clock_fix_s; /* subtracted from its times after loading, 0: none */
} model_rank;

typedef struct {
  int rank_idx; /* into ranks */
  int phase;    /* into phases, -1: default */
  uint64_t iter;
  double t_begin_s, t_end_s;
  double compute_s, comm_s, wall_s, samples;
} model_pi;

typedef struct {
  int rank_idx;
  double t_s;
  uint64_t epoch;
} model_epoch;

typedef struct {
  int launch;
  double t_s;
  uint64_t iter;
  int from_rank; /* a rank's CHECKPOINT (iter is real), not a controller note */
  int rank_idx;  /* its rank when from_rank, else -1 */
} model_ckpt;

typedef struct {
  double t_s;
  char action[32];
  char reason[MODEL_REASON_MAX];
  char target_type[MODEL_NAME_MAX];
  int target_nodes, has_target;
  double target_pi_s;
  double pred_remaining_s; /* of the chosen option: target on switch, else stay */
  double pred_cost_usd;    /* remaining cost of the same option */
  double actual_remaining_s; /* run end - t_s, after model_derive */
} model_decision;

typedef struct {
  int to_launch; /* the launch the switch led to (>= 1) */
  double stop_t_s;          /* stop requested, NaN when not journaled */
  double last_old_pi_s;     /* end of the last PI on the old set */
  double ckpt_end_s, new_init_begin_s, first_new_pi_s;
  double checkpoint_s, restart_s, reinit_s, downtime_s;
  double setup_s; /* new nodes' setup while training (switch_done), NaN */
  char from[MODEL_REASON_MAX], to[MODEL_REASON_MAX]; /* "2 x a, 1 x b" */
} model_switch;

#define MODEL_PATH_MAX 1024 /* bytes, NUL included, of a checkpoint path */

/* One fault (node_lost, closed by node_lost_recovered): nodes lost, or a
 * job that crashed on live nodes (no node), and the relaunch from the
 * last checkpoint that followed.  Figures after model_derive. */
typedef struct {
  double t_s;       /* node_lost: recovery ready, just before the relaunch */
  double lost_s;    /* the lost nodes' first termination, else t_s */
  int from_launch;  /* the launch that was lost */
  int to_launch;    /* the recovery launch, -1 when none was journaled */
  int *lost; size_t n_lost; /* node indices; owned */
  int *repl; size_t n_repl; /* replacement node indices; owned */
  char what[MODEL_REASON_MAX];
  char checkpoint[MODEL_PATH_MAX]; /* "" when resumed from the start */
  uint64_t iters_done, resume_iter, journal_iters_lost;
  uint64_t ckpt_every; /* job.checkpoint_every from the journal, 0: not given */
  int recovered;       /* node_lost_recovered seen */
  double ctl_downtime_s, ctl_cost_usd; /* the controller's own figures, NaN */
  /* derived by model_derive */
  double last_pi_s;     /* end of the last PI of the lost launch */
  double last_useful_s; /* end of the last PI the checkpoint kept */
  double first_pi_s;    /* start of the first PI after it */
  double downtime_s;    /* last_pi_s -> first_pi_s */
  uint64_t last_iter;   /* of the last PI before it (valid when has_last_iter) */
  int has_last_iter;
  uint64_t iters_lost;  /* last_iter + 1 - resume_iter */
  uint64_t interval;    /* the checkpoint interval bound, 0: unknown */
  int interval_from_config; /* 1: job.checkpoint_every; 0: seen between checkpoints */
  double lost_usd, survivors_usd, replacement_usd, cost_usd;
} model_fault;

/* Per (type, phase): the figures of the per-type table. */
typedef struct {
  char type[MODEL_NAME_MAX];
  char phase[MODEL_NAME_MAX];
  int n_series;   /* rank series behind the estimate */
  size_t n_pis, warmup_pis;
  int steady;     /* every series steady */
  double pi_s, pi_lo_s, pi_hi_s; /* steady PI (wall) time and its CI */
  double compute_s;              /* steady compute part */
  double comm_s;                 /* mean comm part over every PI */
} model_steady;

typedef struct {
  char type[MODEL_NAME_MAX];
  int n_nodes;
  double price_usd_per_hour;
  double boot_s, stage_s, setup_s; /* means over its nodes, NaN: unknown */
  double init_s;                   /* init_begin -> init_end, mean over ranks */
  double epoch_s;                  /* mean epoch duration */
  int n_epochs;
} model_type;

typedef struct {
  model_node *nodes; size_t n_nodes, cap_nodes;
  model_rank *ranks; size_t n_ranks, cap_ranks;
  model_pi *pis; size_t n_pis, cap_pis;
  model_epoch *epochs; size_t n_epochs, cap_epochs;
  model_ckpt *ckpts; size_t n_ckpts, cap_ckpts;
  model_decision *decisions; size_t n_decisions, cap_decisions;
  model_fault *faults; size_t n_faults, cap_faults;
  double *stops_s; size_t n_stops, cap_stops;
  char (*phases)[MODEL_NAME_MAX]; size_t n_phases, cap_phases;
  int n_launches;   /* launch events seen (0: one implicit launch) */
  double *launch_t_s; size_t cap_launch;
  double *done_setup_s; size_t n_done, cap_done; /* switch_done setup_s */
  long records, known_records;
  /* The run's span on the controller's clock: its first record's "t"
   * (or a node's requested_s), and run_end's "t", else the last "t".
   * Ranks' own clocks never move them. */
  double t0_s, end_s;
  int has_run_end;
  size_t n_clock_fixed; /* ranks whose clock was off and whose times were moved */
  /* derived by model_derive */
  model_switch *switches; size_t n_switches;
  model_type *types; size_t n_types;
  model_steady *steady; size_t n_steady;
  double cost_usd;
} model_run;

/* Loads run_dir/journal.jsonl into *m (zeroed first).  On error returns a
 * negative PM_E* with a one-line reason naming the line in err.  *warn
 * (optional) gets NULL or the warnings, joined: the journal reader's
 * (a torn last record) and one per rank whose clock was off ("rank 1
 * (launch 0) on node n2: clock differs by ~+3600.0 s ...").  It points to
 * static thread-local storage, valid until the next model_load in the same
 * thread.  m is freed with model_free whatever the outcome. */
int model_load(const char *run_dir, model_run *m, const char **warn,
               char *err, size_t cap);

/* Computes switches, per-type figures, steady estimates and costs. */
int model_derive(model_run *m, char *err, size_t cap);

void model_free(model_run *m);

/* Billed cost of nodes up to time t (accrual, no granularity): the
 * cumulative cost curve. */
double model_cost_at(const model_run *m, double t_s);

/* When node i started costing (requested; else first seen by a rank) and
 * stopped (terminated; else the run's end, or last seen). */
void model_node_extent(const model_run *m, size_t i, double *b, double *e);

/* Name of a phase index ("" for the default phase). */
const char *model_phase_name(const model_run *m, int phase);

/* Node id / type of a rank ("?" / "" when unknown). */
const char *model_rank_node(const model_run *m, int rank_idx);
const char *model_rank_type(const model_run *m, int rank_idx);

#endif
