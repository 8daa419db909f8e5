/* report.c - report_build: journal -> model -> metrics.csv, report.json,
 * report.html; plus the CSV and JSON renderers and the ideal run.
 *
 * Every output is rendered into memory first and then written atomically,
 * so a report is either the old one or the new one, never half of each.
 */
#include "report/report.h"

#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "paramount.h"
#include "report/render.h"

#define REPORT_IDEAL_MAX_BYTES (64u << 20)

/* ---- cost curve ---------------------------------------------------------- */

static int report_dbl_cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int report_curve_build(const model_run *m, report_curve *c) {
  memset(c, 0, sizeof *c);
  size_t cap = 2 * m->n_nodes + 2, n = 0;
  double *t = malloc(cap * sizeof *t);
  if (!t) return PM_ENOMEM;
  t[n++] = m->t0_s;
  t[n++] = m->end_s;
  for (size_t i = 0; i < m->n_nodes; i++) {
    double b, e;
    model_node_extent(m, i, &b, &e);
    if (isfinite(b)) t[n++] = b;
    if (isfinite(e)) t[n++] = e;
  }
  qsort(t, n, sizeof *t, report_dbl_cmp);
  c->t_s = malloc(n * sizeof *c->t_s);
  c->usd = malloc(n * sizeof *c->usd);
  if (!c->t_s || !c->usd) {
    free(t);
    report_curve_free(c);
    return PM_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    if (!(t[i] >= m->t0_s && t[i] <= m->end_s)) continue;
    if (c->n && t[i] == c->t_s[c->n - 1] + m->t0_s) continue;
    c->t_s[c->n] = t[i] - m->t0_s;
    c->usd[c->n] = model_cost_at(m, t[i]);
    c->n++;
  }
  free(t);
  return 0;
}

void report_curve_free(report_curve *c) {
  if (!c) return;
  free(c->t_s);
  free(c->usd);
  memset(c, 0, sizeof *c);
}

/* ---- CSV ----------------------------------------------------------------- */

/* RFC 4180: quote a field holding a comma, quote or line break. */
static void csv_field(FILE *f, const char *s) {
  if (!strpbrk(s, ",\"\r\n")) {
    fputs(s, f);
    return;
  }
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"') fputc('"', f);
    fputc(*s, f);
  }
  fputc('"', f);
}

int render_csv(const model_run *m, FILE *f) {
  fputs("launch,rank,node,type,phase,iteration,time_s,compute_s,comm_s,total_s,samples\n", f);
  for (size_t i = 0; i < m->n_pis; i++) {
    const model_pi *p = &m->pis[i];
    const model_rank *k = &m->ranks[p->rank_idx];
    fprintf(f, "%d,%u,", k->launch, k->rank);
    csv_field(f, model_rank_node(m, p->rank_idx));
    fputc(',', f);
    csv_field(f, model_rank_type(m, p->rank_idx));
    fputc(',', f);
    csv_field(f, model_phase_name(m, p->phase));
    fprintf(f, ",%llu,%.6f,%.9f,%.9f,%.9f,%.17g\n", (unsigned long long)p->iter,
            p->t_end_s - m->t0_s, p->compute_s, p->comm_s, p->wall_s, p->samples);
  }
  return ferror(f) ? PM_EIO : 0;
}

/* ---- JSON ---------------------------------------------------------------- */

static void jnum(json_object *o, const char *k, double v) {
  json_object_object_add(o, k, isfinite(v) ? json_object_new_double(v) : NULL);
}
static void jint(json_object *o, const char *k, long long v) {
  json_object_object_add(o, k, json_object_new_int64(v));
}
static void jstr(json_object *o, const char *k, const char *v) {
  json_object_object_add(o, k, json_object_new_string(v ? v : ""));
}
static double rel(const model_run *m, double t) { return t - m->t0_s; }

int render_json(const model_run *m, const report_ideal *ideal, const report_curve *cost,
                const char *run_dir, const char *warn, json_object **out) {
  *out = NULL;
  json_object *o = json_object_new_object();
  if (!o) return PM_ENOMEM;
  jstr(o, "schema", "paramount-report/1");
  jstr(o, "run_dir", run_dir);
  json_object *jr = json_object_new_object();
  jint(jr, "records", m->records);
  jint(jr, "known_records", m->known_records);
  if (warn) jstr(jr, "warning", warn);
  json_object_object_add(o, "journal", jr);
  jnum(o, "start_s", m->t0_s);
  jnum(o, "end_s", m->end_s);
  jnum(o, "duration_s", m->end_s - m->t0_s);
  jnum(o, "cost_usd", m->cost_usd);
  jint(o, "launches", m->n_launches);
  jint(o, "pis", (long long)m->n_pis);

  json_object *a = json_object_new_array();
  for (size_t i = 0; i < m->n_nodes; i++) {
    const model_node *n = &m->nodes[i];
    json_object *x = json_object_new_object();
    jstr(x, "id", n->id);
    jstr(x, "type", n->type);
    jnum(x, "price_usd_per_hour", n->price_usd_per_hour);
    jnum(x, "requested_s", rel(m, n->requested_s));
    jnum(x, "booted_s", rel(m, n->booted_s));
    jnum(x, "staged_s", rel(m, n->staged_s));
    jnum(x, "ready_s", rel(m, n->ready_s));
    jnum(x, "terminated_s", rel(m, n->terminated_s));
    jnum(x, "boot_s", n->booted_s - n->requested_s);
    jnum(x, "stage_s", n->staged_s - n->booted_s);
    jnum(x, "setup_s", n->ready_s - n->requested_s);
    jnum(x, "cost_usd", n->cost_usd);
    json_object_array_add(a, x);
  }
  json_object_object_add(o, "nodes", a);

  a = json_object_new_array();
  for (size_t i = 0; i < m->n_types; i++) {
    const model_type *t = &m->types[i];
    json_object *x = json_object_new_object();
    jstr(x, "type", t->type);
    jint(x, "nodes", t->n_nodes);
    jnum(x, "price_usd_per_hour", t->price_usd_per_hour);
    jnum(x, "boot_s", t->boot_s);
    jnum(x, "stage_s", t->stage_s);
    jnum(x, "setup_s", t->setup_s);
    jnum(x, "init_s", t->init_s);
    jnum(x, "epoch_s", t->epoch_s);
    jint(x, "epochs", t->n_epochs);
    json_object *ph = json_object_new_array();
    for (size_t j = 0; j < m->n_steady; j++) {
      const model_steady *s = &m->steady[j];
      if (strcmp(s->type, t->type)) continue;
      json_object *y = json_object_new_object();
      jstr(y, "phase", s->phase);
      jint(y, "series", s->n_series);
      jint(y, "pis", (long long)s->n_pis);
      jint(y, "warmup_pis", (long long)s->warmup_pis);
      json_object_object_add(y, "steady", json_object_new_boolean(s->steady));
      jnum(y, "pi_s", s->pi_s);
      jnum(y, "pi_lo_s", s->pi_lo_s);
      jnum(y, "pi_hi_s", s->pi_hi_s);
      jnum(y, "compute_s", s->compute_s);
      jnum(y, "comm_s", s->comm_s);
      json_object_array_add(ph, y);
    }
    json_object_object_add(x, "phases", ph);
    json_object_array_add(a, x);
  }
  json_object_object_add(o, "types", a);

  a = json_object_new_array();
  for (size_t i = 0; i < m->n_switches; i++) {
    const model_switch *s = &m->switches[i];
    json_object *x = json_object_new_object();
    jint(x, "to_launch", s->to_launch);
    jstr(x, "from", s->from);
    jstr(x, "to", s->to);
    jnum(x, "stop_request_s", rel(m, s->stop_t_s));
    jnum(x, "last_old_pi_s", rel(m, s->last_old_pi_s));
    jnum(x, "first_new_pi_s", rel(m, s->first_new_pi_s));
    jnum(x, "setup_s", s->setup_s);
    jnum(x, "checkpoint_s", s->checkpoint_s);
    jnum(x, "restart_s", s->restart_s);
    jnum(x, "reinit_s", s->reinit_s);
    jnum(x, "downtime_s", s->downtime_s);
    json_object_array_add(a, x);
  }
  json_object_object_add(o, "switches", a);

  a = json_object_new_array();
  for (size_t i = 0; i < m->n_faults; i++) {
    const model_fault *x = &m->faults[i];
    json_object *y = json_object_new_object();
    jnum(y, "t_s", rel(m, x->lost_s));
    jnum(y, "recovery_s", rel(m, x->t_s));
    jstr(y, "what", x->what);
    json_object *ids = json_object_new_array(), *types = json_object_new_array();
    for (size_t k = 0; k < x->n_lost; k++) {
      json_object_array_add(ids, json_object_new_string(m->nodes[x->lost[k]].id));
      json_object_array_add(types, json_object_new_string(m->nodes[x->lost[k]].type));
    }
    json_object_object_add(y, "nodes", ids);
    json_object_object_add(y, "types", types);
    jint(y, "from_launch", x->from_launch);
    if (x->to_launch >= 0) jint(y, "to_launch", x->to_launch);
    else json_object_object_add(y, "to_launch", NULL);
    if (x->has_last_iter) jint(y, "last_iter", (long long)x->last_iter);
    else json_object_object_add(y, "last_iter", NULL);
    jint(y, "resume_iter", (long long)x->resume_iter);
    jint(y, "iterations_lost", (long long)x->iters_lost);
    if (x->interval) {
      jint(y, "checkpoint_interval", (long long)x->interval);
      jstr(y, "checkpoint_interval_source", x->interval_from_config ? "config" : "checkpoints");
      json_object_object_add(y, "within_interval",
                             json_object_new_boolean(x->iters_lost <= x->interval));
    } else {
      json_object_object_add(y, "checkpoint_interval", NULL);
      json_object_object_add(y, "checkpoint_interval_source", NULL);
      json_object_object_add(y, "within_interval", NULL);
    }
    if (x->checkpoint[0]) jstr(y, "checkpoint", x->checkpoint);
    else json_object_object_add(y, "checkpoint", NULL);
    jnum(y, "last_pi_s", rel(m, x->last_pi_s));
    jnum(y, "last_useful_pi_s", rel(m, x->last_useful_s));
    jnum(y, "first_pi_s", rel(m, x->first_pi_s));
    jnum(y, "downtime_s", x->downtime_s);
    ids = json_object_new_array();
    for (size_t k = 0; k < x->n_repl; k++)
      json_object_array_add(ids, json_object_new_string(m->nodes[x->repl[k]].id));
    json_object_object_add(y, "replacement", ids);
    jnum(y, "cost_usd", x->cost_usd);
    jnum(y, "lost_nodes_usd", x->lost_usd);
    jnum(y, "survivors_usd", x->survivors_usd);
    jnum(y, "replacement_usd", x->replacement_usd);
    jnum(y, "controller_downtime_s", x->ctl_downtime_s);
    jnum(y, "controller_cost_usd", x->ctl_cost_usd);
    json_object_array_add(a, y);
  }
  json_object_object_add(o, "faults", a);

  a = json_object_new_array();
  for (size_t i = 0; i < m->n_decisions; i++) {
    const model_decision *d = &m->decisions[i];
    json_object *x = json_object_new_object();
    jnum(x, "t_s", rel(m, d->t_s));
    jstr(x, "action", d->action);
    jstr(x, "reason", d->reason);
    if (d->has_target) {
      jstr(x, "target_type", d->target_type);
      jint(x, "target_nodes", d->target_nodes);
    }
    jnum(x, "predicted_remaining_s", d->pred_remaining_s);
    jnum(x, "actual_remaining_s", d->actual_remaining_s);
    jnum(x, "predicted_remaining_cost_usd", d->pred_cost_usd);
    json_object_array_add(a, x);
  }
  json_object_object_add(o, "decisions", a);

  a = json_object_new_array();
  for (size_t i = 0; i < cost->n; i++) {
    json_object *pt = json_object_new_array();
    json_object_array_add(pt, json_object_new_double(cost->t_s[i]));
    json_object_array_add(pt, json_object_new_double(cost->usd[i]));
    json_object_array_add(a, pt);
  }
  json_object_object_add(o, "cost_curve", a);

  json_object *id = json_object_new_object();
  json_object_object_add(id, "known", json_object_new_boolean(ideal->known));
  jstr(id, "source", ideal->source);
  jstr(id, "note", ideal->note);
  if (ideal->known) {
    jnum(id, "cost_usd", ideal->cost_usd);
    jnum(id, "duration_s", ideal->duration_s);
    if (ideal->cost_usd > 0) jnum(id, "cost_ratio", m->cost_usd / ideal->cost_usd);
    if (ideal->duration_s > 0) jnum(id, "time_ratio", (m->end_s - m->t0_s) / ideal->duration_s);
  }
  json_object_object_add(o, "ideal", id);
  *out = o;
  return 0;
}

/* ---- the ideal run -------------------------------------------------------- */

static void ideal_free(report_ideal *id) {
  free(id->t_s);
  free(id->usd);
  id->t_s = id->usd = NULL;
  id->n = 0;
}

static int ideal_line(report_ideal *id) {
  id->t_s = malloc(2 * sizeof *id->t_s);
  id->usd = malloc(2 * sizeof *id->usd);
  if (!id->t_s || !id->usd) return PM_ENOMEM;
  id->t_s[0] = 0;
  id->usd[0] = 0;
  id->t_s[1] = id->duration_s;
  id->usd[1] = id->cost_usd;
  id->n = 2;
  return 0;
}

/* From a comparison run's report.json: its cost curve, or a straight line
 * to its total when it has none. */
static int ideal_from_run(const char *dir, report_ideal *id, char *err, size_t cap) {
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/report.json", dir) >= (int)sizeof path) {
    snprintf(err, cap, "--ideal: path too long");
    return PM_EINVAL;
  }
  char *buf = NULL;
  size_t len = 0;
  int rc = util_read_file(path, REPORT_IDEAL_MAX_BYTES, &buf, &len);
  if (rc) {
    snprintf(err, cap, "--ideal: cannot read %s: %s (run `paramount report %s` first?)", path,
             pm_strerror(rc), dir);
    return rc;
  }
  json_object *o = json_tokener_parse(buf);
  free(buf);
  json_object *v, *c;
  if (!o || !json_object_is_type(o, json_type_object) ||
      !json_object_object_get_ex(o, "schema", &v) ||
      strcmp(json_object_get_string(v), "paramount-report/1") ||
      !json_object_object_get_ex(o, "cost_usd", &v) ||
      !(json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int))) {
    json_object_put(o);
    snprintf(err, cap, "--ideal: %s is not a Paramount report (no schema or cost_usd)", path);
    return PM_EPARSE;
  }
  id->cost_usd = json_object_get_double(v);
  id->duration_s = json_object_object_get_ex(o, "duration_s", &v) ? json_object_get_double(v) : 0;
  rc = 0;
  if (json_object_object_get_ex(o, "cost_curve", &c) && json_object_is_type(c, json_type_array) &&
      json_object_array_length(c) >= 2) {
    size_t n = json_object_array_length(c);
    id->t_s = malloc(n * sizeof *id->t_s);
    id->usd = malloc(n * sizeof *id->usd);
    if (!id->t_s || !id->usd) rc = PM_ENOMEM;
    for (size_t i = 0; !rc && i < n; i++) {
      json_object *pt = json_object_array_get_idx(c, i);
      if (!json_object_is_type(pt, json_type_array) || json_object_array_length(pt) != 2) {
        snprintf(err, cap, "--ideal: %s: cost_curve point %zu is not [t, usd]", path, i);
        rc = PM_EPARSE;
        break;
      }
      id->t_s[i] = json_object_get_double(json_object_array_get_idx(pt, 0));
      id->usd[i] = json_object_get_double(json_object_array_get_idx(pt, 1));
      id->n = i + 1;
    }
  } else {
    rc = ideal_line(id);
  }
  json_object_put(o);
  if (rc) return rc;
  id->known = 1;
  snprintf(id->source, sizeof id->source, "run");
  snprintf(id->note, sizeof id->note, "ideal run: %s", dir);
  return 0;
}

/* The policy's view of the ideal run: the last switch's target type and
 * node count from the start, its predicted PI time for every iteration of
 * this run, plus the type's measured setup and init times. */
static int ideal_from_policy(const model_run *m, report_ideal *id) {
  const model_decision *d = NULL;
  for (size_t i = m->n_decisions; i-- > 0;)
    if (!strcmp(m->decisions[i].action, "switch") && m->decisions[i].has_target &&
        m->decisions[i].target_type[0] && m->decisions[i].target_nodes > 0 &&
        m->decisions[i].target_pi_s > 0) {
      d = &m->decisions[i];
      break;
    }
  if (!d) {
    snprintf(id->note, sizeof id->note,
             "the ideal run's cost is not known: pass --ideal RUN_DIR of a run on the ideal "
             "configuration (no switch decision in this journal predicts it)");
    return 0;
  }
  double price = NAN, setup = 0, init = 0;
  for (size_t i = 0; i < m->n_types; i++)
    if (!strcmp(m->types[i].type, d->target_type)) {
      price = m->types[i].price_usd_per_hour;
      if (isfinite(m->types[i].setup_s)) setup = m->types[i].setup_s;
      if (isfinite(m->types[i].init_s)) init = m->types[i].init_s;
    }
  uint64_t lo = UINT64_MAX, hi = 0;
  for (size_t i = 0; i < m->n_pis; i++) {
    if (m->pis[i].iter < lo) lo = m->pis[i].iter;
    if (m->pis[i].iter > hi) hi = m->pis[i].iter;
  }
  if (!(price > 0) || lo > hi) {
    snprintf(id->note, sizeof id->note,
             "the ideal run's cost is not known: no price for type %.128s in the journal; "
             "pass --ideal RUN_DIR", d->target_type);
    return 0;
  }
  double iters = (double)(hi - lo + 1);
  id->duration_s = setup + init + iters * d->target_pi_s;
  id->cost_usd = d->target_nodes * price / 3600.0 * id->duration_s;
  int rc = ideal_line(id);
  if (rc) return rc;
  id->known = 1;
  snprintf(id->source, sizeof id->source, "policy");
  snprintf(id->note, sizeof id->note,
           "ideal predicted by the policy: %d x %.128s from the start, %.0f PIs of %.3f s, "
           "setup %.1f s, init %.1f s", d->target_nodes, d->target_type, iters, d->target_pi_s,
           setup, init);
  return 0;
}

/* ---- report_build ---------------------------------------------------------- */

static int report_write(const char *dir, const char *name, char *data, size_t len,
                        char *err, size_t cap) {
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) {
    snprintf(err, cap, "output path too long: %s/%s", dir, name);
    return PM_EINVAL;
  }
  int rc = util_write_file_atomic(path, data, len);
  if (rc) snprintf(err, cap, "cannot write %s: %s", path, pm_strerror(rc));
  return rc;
}

int report_build(const char *run_dir, const report_opts *o, char *err, size_t cap) {
  static const report_opts none = {0};
  char dummy[8];
  if (!err || cap == 0) {
    err = dummy;
    cap = sizeof dummy;
  }
  err[0] = '\0';
  if (!o) o = &none;
  if (o->warn) *o->warn = NULL;
  if (!run_dir || !*run_dir) {
    snprintf(err, cap, "no run directory given");
    return PM_EINVAL;
  }
  const char *out_dir = o->out_dir ? o->out_dir : run_dir;
  model_run m;
  report_ideal ideal = {0};
  report_curve cost = {0};
  const char *warn = NULL;
  char *buf = NULL;
  size_t len = 0;
  FILE *f = NULL;
  json_object *jo = NULL;
  int rc = model_load(run_dir, &m, &warn, err, cap);
  if (o->warn) *o->warn = warn;
  if (!rc) rc = model_derive(&m, err, cap);
  if (rc) goto out;
  if (o->ideal_dir) rc = ideal_from_run(o->ideal_dir, &ideal, err, cap);
  else rc = ideal_from_policy(&m, &ideal);
  if (!rc) rc = report_curve_build(&m, &cost);
  if (rc) {
    if (!err[0]) snprintf(err, cap, "%s", pm_strerror(rc));
    goto out;
  }

  rc = PM_ENOMEM;
  if (!(f = open_memstream(&buf, &len))) goto out_nomem;
  rc = render_csv(&m, f);
  if (fclose(f) && !rc) rc = PM_EIO;
  f = NULL;
  if (rc) goto out_nomem;
  if ((rc = report_write(out_dir, "metrics.csv", buf, len, err, cap))) goto out;
  free(buf);
  buf = NULL;

  if ((rc = render_json(&m, &ideal, &cost, run_dir, warn, &jo))) goto out_nomem;
  size_t jlen = 0;
  const char *js = json_object_to_json_string_length(
      jo, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE, &jlen);
  if (!js) goto out_nomem;
  char *jcopy = malloc(jlen + 1);
  if (!jcopy) goto out_nomem;
  memcpy(jcopy, js, jlen);
  jcopy[jlen] = '\n';
  rc = report_write(out_dir, "report.json", jcopy, jlen + 1, err, cap);
  free(jcopy);
  if (rc) goto out;

  rc = PM_ENOMEM;
  if (!(f = open_memstream(&buf, &len))) goto out_nomem;
  rc = render_html(&m, &ideal, &cost, run_dir, warn, f);
  if (fclose(f) && !rc) rc = PM_EIO;
  f = NULL;
  if (rc) goto out_nomem;
  rc = report_write(out_dir, "report.html", buf, len, err, cap);
  goto out;

out_nomem:
  if (!rc) rc = PM_ENOMEM;
  snprintf(err, cap, "cannot render the report: %s", pm_strerror(rc));
out:
  if (f) fclose(f);
  free(buf);
  json_object_put(jo);
  report_curve_free(&cost);
  ideal_free(&ideal);
  model_free(&m);
  return rc;
}
