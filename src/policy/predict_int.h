/* predict_int.h - the cost model's internals shared with decide.c.
 *
 * A change is described node by node (which current nodes stay, how many
 * of which type are added) so that homogeneous targets and clap-bot's
 * add-one/stop-one steps go through the same prediction code.
 */
#ifndef PM_POLICY_PREDICT_INT_H
#define PM_POLICY_PREDICT_INT_H

#include "policy/policy.h"

typedef struct {
  double spp[3];    /* s/sample: point, fast end (lo), slow end (hi) */
  int measured;     /* 0: from the catalog's speed hint */
  int settled;
  int extrapolated; /* measured in another phase only */
} policy_speed_t;

typedef struct {
  int keep[POLICY_MAX_NODES];    /* 1: current node i stays */
  const policy_type_t *add_type; /* borrowed from the input's catalog */
  int add_count;
} policy_change_t;

const policy_type_t *policy_type_find(const policy_input_t *in,
                                      const char *name);
const policy_estimate_t *policy_est_find(const policy_estimates_t *e,
                                         const char *type, const char *phase);
int policy_speed(const policy_input_t *in, const policy_cfg_t *cfg,
                 const policy_estimates_t *e, const char *type,
                 const char *phase, policy_speed_t *out);
/* Index of the first phase with work left, or -1 when the job is done. */
int policy_current_phase(const policy_input_t *in);
int policy_input_check(const policy_input_t *in, const policy_cfg_t *cfg);
/* PM_ESTATE when the job is done; PM_ENOENT when a speed is unknown. */
int policy_predict_change(const policy_input_t *in, const policy_cfg_t *cfg,
                          const policy_estimates_t *e,
                          const policy_change_t *ch, policy_prediction_t *out);

#endif /* PM_POLICY_PREDICT_INT_H */
