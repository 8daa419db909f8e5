/* policy_int.h - what the policy's own files share and nobody else uses.
 *
 * A view reads a series either from a plain array or straight from the
 * PI records (compute seconds per sample, or comm seconds), so that the
 * estimators never copy or allocate.
 */
#ifndef PM_POLICY_INT_H
#define PM_POLICY_INT_H

#include "policy/policy.h"

typedef enum { VIEW_S_PER_SAMPLE = 0, VIEW_COMM_S = 1 } policy_view_what_t;

typedef struct {
  const double *x;          /* plain samples, or NULL to read pis */
  const policy_pi_t *pis;   /* borrowed */
  double batch_per_rank;    /* when a PI's samples is 0 */
  policy_view_what_t what;
} policy_view_t;

/* The i-th sample of a view (no bounds check: i < the series length). */
double view_at(const policy_view_t *v, size_t i);

/* policy_estimate_steady on a view; the caller validated the samples. */
int policy_steady_view(const policy_view_t *x, size_t n,
                       const policy_steady_cfg_t *cfg, policy_steady_t *out);

/* NULL and "" are the same (default) phase. */
int policy_name_eq(const char *a, const char *b);

/* Copies a name, truncated, into a POLICY_NAME_MAX buffer. */
void policy_name_copy(char *dst, const char *src);

#endif /* PM_POLICY_INT_H */
