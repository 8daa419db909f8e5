/* policy_json.c - a decision's numbers as JSON, for the journal.
 *
 * The controller journals every decision without knowing its fields: it
 * takes the json-c object (or the rendered line) from here.  The only
 * file of the policy that links json-c.  Non-finite numbers become null.
 */
#include <json-c/json.h>
#include <math.h>
#include <string.h>

#include "paramount.h"
#include "policy/policy.h"

/* Each add_* returns 0 or -1 (out of memory); the object keeps what was
 * added so far and is put by the caller. */
static int add_num(json_object *o, const char *k, double v) {
  json_object *x = isfinite(v) ? json_object_new_double(v) : NULL;
  if (isfinite(v) && !x) return -1;
  return json_object_object_add(o, k, x) ? -1 : 0;
}

static int add_int(json_object *o, const char *k, long long v) {
  json_object *x = json_object_new_int64(v);
  if (!x) return -1;
  return json_object_object_add(o, k, x) ? -1 : 0;
}

static int add_str(json_object *o, const char *k, const char *v) {
  json_object *x = json_object_new_string(v ? v : "");
  if (!x) return -1;
  return json_object_object_add(o, k, x) ? -1 : 0;
}

static int add_obj(json_object *o, const char *k, json_object *v) {
  if (!v) return -1;
  if (json_object_object_add(o, k, v)) {
    json_object_put(v);
    return -1;
  }
  return 0;
}

static json_object *prediction_json(const policy_prediction_t *p) {
  json_object *o = json_object_new_object();
  if (!o) return NULL;
  int bad = 0;
  bad |= add_str(o, "type", p->type);
  bad |= add_int(o, "nodes", p->nodes);
  bad |= add_int(o, "is_stay", p->is_stay);
  bad |= add_int(o, "reused_nodes", p->reused_nodes);
  bad |= add_int(o, "new_nodes", p->new_nodes);
  bad |= add_int(o, "removed_nodes", p->removed_nodes);
  bad |= add_num(o, "setup_s", p->setup_s);
  bad |= add_num(o, "downtime_s", p->downtime_s);
  bad |= add_num(o, "pi_s", p->pi_s);
  bad |= add_num(o, "compute_s", p->compute_s);
  bad |= add_num(o, "comm_s", p->comm_s);
  bad |= add_num(o, "time_s", p->time_s);
  bad |= add_num(o, "end_s", p->end_s);
  bad |= add_num(o, "cost_usd", p->cost_usd);
  bad |= add_num(o, "total_usd", p->total_usd);
  bad |= add_num(o, "time_lo_s", p->time_lo_s);
  bad |= add_num(o, "cost_lo_usd", p->cost_lo_usd);
  bad |= add_num(o, "time_hi_s", p->time_hi_s);
  bad |= add_num(o, "cost_hi_usd", p->cost_hi_usd);
  bad |= add_int(o, "feasible", p->feasible);
  bad |= add_int(o, "measured", p->measured);
  bad |= add_int(o, "settled", p->settled);
  bad |= add_int(o, "extrapolated", p->extrapolated);
  if (bad) {
    json_object_put(o);
    return NULL;
  }
  return o;
}

static json_object *estimate_json(const policy_estimate_t *e) {
  json_object *o = json_object_new_object();
  if (!o) return NULL;
  int bad = 0;
  bad |= add_str(o, "type", e->type);
  bad |= add_str(o, "phase", e->phase);
  bad |= add_int(o, "launch", e->launch);
  bad |= add_int(o, "nodes", e->nodes);
  bad |= add_int(o, "n_series", e->n_series);
  bad |= add_int(o, "n_pis", (long long)e->n_pis);
  bad |= add_int(o, "n_used", (long long)e->n_used);
  bad |= add_int(o, "warmup_pis", (long long)e->warmup_pis);
  bad |= add_int(o, "level_changes", e->level_changes);
  bad |= add_int(o, "settled", e->settled);
  bad |= add_int(o, "steady", e->steady);
  bad |= add_num(o, "s_per_sample", e->s_per_sample);
  bad |= add_num(o, "s_per_sample_lo", e->s_per_sample_lo);
  bad |= add_num(o, "s_per_sample_hi", e->s_per_sample_hi);
  bad |= add_num(o, "rel_halfwidth", e->rel_halfwidth);
  bad |= add_num(o, "comm_s", e->comm_s);
  bad |= add_num(o, "raw_s_per_sample", e->raw_s_per_sample);
  if (bad) {
    json_object_put(o);
    return NULL;
  }
  return o;
}

int policy_decision_to_json(const policy_decision_t *d, json_object **out) {
  if (!out) return PM_EINVAL;
  *out = NULL;
  if (!d) return PM_EINVAL;
  json_object *o = json_object_new_object();
  if (!o) return PM_ENOMEM;
  int bad = 0;
  bad |= add_str(o, "policy", policy_kind_name(d->kind));
  bad |= add_str(o, "objective", policy_objective_name(d->objective));
  bad |= add_str(o, "action", policy_action_name(d->action));
  bad |= add_str(o, "reason", d->reason);
  bad |= add_num(o, "now_s", d->now_s);
  bad |= add_num(o, "margin_rel", d->margin_rel);
  bad |= add_num(o, "gain", d->gain);
  bad |= add_num(o, "gain_required", d->gain_required);
  bad |= add_num(o, "gain_pessimistic", d->gain_pessimistic);
  bad |= add_int(o, "forced", d->forced);
  bad |= add_int(o, "early", d->early);
  bad |= add_num(o, "gain_early", d->gain_early);
  bad |= add_str(o, "add_type", d->add_type);
  bad |= add_int(o, "add_count", d->add_count);
  json_object *rm = json_object_new_array();
  for (int i = 0; rm && i < d->n_remove && i < POLICY_MAX_NODES; i++) {
    json_object *x = json_object_new_int(d->remove[i]);
    if (!x || json_object_array_add(rm, x)) {
      json_object_put(x);
      bad = -1;
    }
  }
  bad |= add_obj(o, "remove", rm);
  bad |= add_obj(o, "stay", prediction_json(&d->stay));
  if (d->has_target) bad |= add_obj(o, "target", prediction_json(&d->target));
  bad |= add_int(o, "n_candidates", (long long)d->n_candidates);
  json_object *pt = json_object_new_array();
  for (size_t i = 0; pt && i < d->n_per_type && i < POLICY_MAX_TYPES; i++) {
    json_object *x = prediction_json(&d->per_type[i]);
    if (!x || json_object_array_add(pt, x)) {
      json_object_put(x);
      bad = -1;
    }
  }
  bad |= add_obj(o, "per_type", pt);
  json_object *es = json_object_new_array();
  for (size_t i = 0; es && i < d->estimates.n && i < POLICY_MAX_ESTIMATES;
       i++) {
    json_object *x = estimate_json(&d->estimates.est[i]);
    if (!x || json_object_array_add(es, x)) {
      json_object_put(x);
      bad = -1;
    }
  }
  bad |= add_obj(o, "estimates", es);
  json_object *cm = json_object_new_object();
  if (cm) {
    bad |= add_int(cm, "n_points", d->estimates.comm.n_points);
    bad |= add_num(cm, "bw_s", d->estimates.comm.bw_s);
    bad |= add_num(cm, "lat_s", d->estimates.comm.lat_s);
  }
  bad |= add_obj(o, "comm", cm);
  if (bad) {
    json_object_put(o);
    return PM_ENOMEM;
  }
  *out = o;
  return 0;
}

int policy_decision_render(const policy_decision_t *d, char *buf, size_t cap,
                           size_t *len) {
  if (!d || !buf || cap == 0) return PM_EINVAL;
  buf[0] = '\0';
  json_object *o = NULL;
  int rc = policy_decision_to_json(d, &o);
  if (rc) return rc;
  size_t n = 0;
  const char *s = json_object_to_json_string_length(
      o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
  if (!s) {
    json_object_put(o);
    return PM_ENOMEM;
  }
  if (n + 1 > cap) {
    json_object_put(o);
    return PM_ENOSPC;
  }
  memcpy(buf, s, n + 1);
  json_object_put(o);
  if (len) *len = n;
  return 0;
}
