/* render.h - the report's three renderers (CSV, JSON, HTML with SVG) and
 * what they share: the ideal run to compare with and the cost curve.
 *
 * Internal to src/report.  Renderers write to a FILE (a memory stream in
 * report_build, so each output file is replaced atomically) and never
 * read anything but the model.
 */
#ifndef PM_REPORT_RENDER_H
#define PM_REPORT_RENDER_H

#include <stdio.h>

#include "report/model.h"

struct json_object;

/* The ideal run's cumulative cost, from a comparison run's report.json or
 * predicted from the policy's numbers; known == 0 with note saying why. */
typedef struct {
  int known;
  char source[16]; /* "run" or "policy" */
  char note[512];
  double cost_usd, duration_s;
  double *t_s, *usd; /* curve, seconds from its start; owned */
  size_t n;
} report_ideal;

/* The run's cumulative cost at every point where its slope changes. */
typedef struct {
  double *t_s, *usd; /* seconds from the run's start; owned */
  size_t n;
} report_curve;

int report_curve_build(const model_run *m, report_curve *c);
void report_curve_free(report_curve *c);

/* "launch,rank,node,type,phase,iteration,time_s,compute_s,comm_s,total_s,samples" */
int render_csv(const model_run *m, FILE *f);

/* *out: a new object owned by the caller. */
int render_json(const model_run *m, const report_ideal *ideal, const report_curve *cost,
                const char *run_dir, const char *warn, struct json_object **out);

int render_html(const model_run *m, const report_ideal *ideal, const report_curve *cost,
                const char *run_dir, const char *warn, FILE *f);

/* Writes s with & < > " ' escaped, for HTML text and attribute values. */
void render_html_esc(FILE *f, const char *s);

#endif
