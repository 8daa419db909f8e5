/* html.c - report.html: one self-contained page (inline CSS, hand-written
 * SVG, no script, no network) with the run's charts and tables.
 *
 * Every string that comes from the journal (node ids, types, phases,
 * reasons, paths) goes through render_html_esc: a journal is outside
 * input and a node named "<script>" must stay text.
 */
#include <math.h>
#include <string.h>

#include "paramount.h"
#include "report/render.h"

#define SVG_W 960
#define SVG_H 320
#define SVG_ML 64 /* margins, px: room for tick labels and axis titles */
#define SVG_MR 16
#define SVG_MT 12
#define SVG_MB 44
#define SERIES_MAX_POINTS 1500 /* per polyline: a browser stays quick */

static const char *const palette[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759",
                                      "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
                                      "#9c755f", "#bab0ac"};
#define PALETTE_N (sizeof palette / sizeof palette[0])

void render_html_esc(FILE *f, const char *s) {
  for (; s && *s; s++) {
    switch (*s) {
    case '&': fputs("&amp;", f); break;
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '"': fputs("&quot;", f); break;
    case '\'': fputs("&#39;", f); break;
    default: fputc(*s, f);
    }
  }
}

/* At most max_chars characters of s (UTF-8 aware), escaped, with an
 * ellipsis when cut: row labels must fit the chart's left margin. */
static void html_esc_short(FILE *f, const char *s, size_t max_chars) {
  char buf[MODEL_NAME_MAX];
  size_t n = 0, chars = 0;
  for (; s[n] && n + 1 < sizeof buf; n++) {
    if (((unsigned char)s[n] & 0xC0) != 0x80 && chars++ == max_chars) break;
    buf[n] = s[n];
  }
  buf[n] = '\0';
  render_html_esc(f, buf);
  if (s[n]) fputs("&hellip;", f);
}

/* A number, or an en dash when the journal did not give it. */
static void html_num(FILE *f, double v, int prec) {
  if (isfinite(v)) fprintf(f, "%.*f", prec, v);
  else fputs("&ndash;", f);
}

static const char *html_type_label(const char *type) { return type[0] ? type : "type unknown"; }

/* ---- chart frame -------------------------------------------------------- */

typedef struct {
  double x0, x1, y0, y1; /* data range */
} chart;

static double chart_x(const chart *c, double x) {
  return SVG_ML + (x - c->x0) / (c->x1 - c->x0) * (SVG_W - SVG_ML - SVG_MR);
}
static double chart_y(const chart *c, double y) {
  return SVG_H - SVG_MB - (y - c->y0) / (c->y1 - c->y0) * (SVG_H - SVG_MT - SVG_MB);
}

/* A "nice" tick step (1, 2 or 5 x 10^k) giving about n ticks over span. */
static double chart_step(double span, int n) {
  double raw = span / n;
  double mag = pow(10, floor(log10(raw)));
  double r = raw / mag;
  return (r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10) * mag;
}

/* Widens a degenerate or non-finite range so that scales stay finite. */
static void chart_range(double *lo, double *hi, int from_zero) {
  if (!isfinite(*lo) || !isfinite(*hi)) *lo = *hi = 0;
  if (from_zero && *lo > 0) *lo = 0;
  if (*hi - *lo < 1e-9) *hi = *lo + (fabs(*lo) > 0 ? fabs(*lo) * 0.1 : 1);
  double step = chart_step(*hi - *lo, 5);
  *hi = ceil(*hi / step - 1e-9) * step;
  if (!from_zero) *lo = floor(*lo / step + 1e-9) * step;
}

static void chart_begin(FILE *f, const chart *c, const char *id, const char *title,
                        const char *xlabel, const char *ylabel, int y_ticks) {
  fprintf(f, "<figure class=\"chart\"><figcaption>%s</figcaption>\n", title);
  fprintf(f, "<svg id=\"%s\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" "
             "role=\"img\" aria-label=\"%s\">\n", id, SVG_W, SVG_H, title);
  double sx = chart_step(c->x1 - c->x0, 8);
  fputs("<g class=\"grid\">", f);
  for (double x = ceil(c->x0 / sx - 1e-9) * sx; x <= c->x1 + 1e-9 * sx; x += sx)
    fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>", chart_x(c, x), SVG_MT,
            chart_x(c, x), SVG_H - SVG_MB);
  double sy = chart_step(c->y1 - c->y0, 5);
  if (y_ticks)
    for (double y = ceil(c->y0 / sy - 1e-9) * sy; y <= c->y1 + 1e-9 * sy; y += sy)
      fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>", SVG_ML, chart_y(c, y),
              SVG_W - SVG_MR, chart_y(c, y));
  fputs("</g>\n<g class=\"axis\">", f);
  fprintf(f, "<path d=\"M%d %d V%d H%d\"/>", SVG_ML, SVG_MT, SVG_H - SVG_MB, SVG_W - SVG_MR);
  for (double x = ceil(c->x0 / sx - 1e-9) * sx; x <= c->x1 + 1e-9 * sx; x += sx)
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>", chart_x(c, x),
            SVG_H - SVG_MB + 16, fabs(x) < 1e-9 * sx ? 0 : x);
  if (y_ticks)
    for (double y = ceil(c->y0 / sy - 1e-9) * sy; y <= c->y1 + 1e-9 * sy; y += sy)
      fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>", SVG_ML - 6,
              chart_y(c, y) + 4, fabs(y) < 1e-9 * sy ? 0 : y);
  fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>",
          (SVG_ML + SVG_W - SVG_MR) / 2, SVG_H - 6, xlabel);
  fprintf(f, "<text transform=\"translate(14 %d) rotate(-90)\" text-anchor=\"middle\">%s</text>",
          (SVG_MT + SVG_H - SVG_MB) / 2, ylabel);
  fputs("</g>\n", f);
}

/* Dashed vertical markers at every switch, the downtime shaded. */
static void chart_switches(FILE *f, const chart *c, const model_run *m) {
  for (size_t i = 0; i < m->n_switches; i++) {
    const model_switch *s = &m->switches[i];
    double a = chart_x(c, s->last_old_pi_s - m->t0_s), b = chart_x(c, s->first_new_pi_s - m->t0_s);
    fprintf(f, "<rect class=\"downtime\" x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\"/>",
            a, SVG_MT, b - a > 1 ? b - a : 1, SVG_H - SVG_MT - SVG_MB);
    fprintf(f, "<line class=\"switch\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>"
               "<text class=\"switch\" x=\"%.1f\" y=\"%d\">switch %zu</text>\n",
            a, SVG_MT, a, SVG_H - SVG_MB, a + 3, SVG_MT + 12, i + 1);
  }
}

/* Every fault: its lost work (last kept PI -> last PI) and its downtime
 * (-> first PI after it) shaded, a solid marker where the node was lost. */
static void chart_faults(FILE *f, const chart *c, const model_run *m) {
  for (size_t i = 0; i < m->n_faults; i++) {
    const model_fault *x = &m->faults[i];
    double lost = x->lost_s - m->t0_s;
    if (isfinite(x->last_useful_s) && isfinite(x->last_pi_s) && x->last_pi_s > x->last_useful_s) {
      double a = chart_x(c, x->last_useful_s - m->t0_s), b = chart_x(c, x->last_pi_s - m->t0_s);
      fprintf(f, "<rect class=\"lostwork\" x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\">"
                 "<title>fault %zu: work lost</title></rect>",
              a, SVG_MT, b - a > 1 ? b - a : 1, SVG_H - SVG_MT - SVG_MB, i + 1);
    }
    if (isfinite(x->last_pi_s) && isfinite(x->first_pi_s)) {
      double a = chart_x(c, x->last_pi_s - m->t0_s), b = chart_x(c, x->first_pi_s - m->t0_s);
      fprintf(f, "<rect class=\"faultdown\" x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\">"
                 "<title>fault %zu: downtime</title></rect>",
              a, SVG_MT, b - a > 1 ? b - a : 1, SVG_H - SVG_MT - SVG_MB, i + 1);
    }
    if (!isfinite(lost) || lost < c->x0 || lost > c->x1) continue;
    double xl = chart_x(c, lost);
    fprintf(f, "<line class=\"fault\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>"
               "<text class=\"fault\" x=\"%.1f\" y=\"%d\">fault %zu",
            xl, SVG_MT, xl, SVG_H - SVG_MB, xl + 3, SVG_MT + 26, i + 1);
    if (x->n_lost) {
      fputs(": ", f);
      html_esc_short(f, m->nodes[x->lost[0]].id, 12);
      if (x->n_lost > 1) fprintf(f, " +%zu", x->n_lost - 1);
    }
    fputs("<title>", f);
    render_html_esc(f, x->what);
    fputs("</title></text>\n", f);
  }
}

static void chart_end(FILE *f) { fputs("</svg>\n", f); }

static void legend_begin(FILE *f) { fputs("<ul class=\"legend\">", f); }
static void legend_item(FILE *f, const char *color, const char *dash, const char *label,
                        const char *extra) {
  fprintf(f, "<li><svg width=\"22\" height=\"10\"><line x1=\"0\" y1=\"5\" x2=\"22\" y2=\"5\" "
             "stroke=\"%s\" stroke-width=\"3\"%s/></svg>", color, dash);
  render_html_esc(f, label);
  if (extra) {
    fputs(" (", f);
    render_html_esc(f, extra);
    fputc(')', f);
  }
  fputs("</li>", f);
}
static void legend_end(FILE *f) { fputs("</ul></figure>\n", f); }

static void chart_note(FILE *f, const char *title, const char *note) {
  fprintf(f, "<figure class=\"chart\"><figcaption>%s</figcaption><p class=\"note\">", title);
  render_html_esc(f, note);
  fputs("</p></figure>\n", f);
}

/* ---- charts ------------------------------------------------------------- */

static int html_type_index(const model_run *m, const char *type) {
  for (size_t i = 0; i < m->n_types; i++)
    if (!strcmp(m->types[i].type, type)) return (int)i;
  return 0;
}

static void chart_pi(FILE *f, const model_run *m) {
  const char *title = "PI time per node over time";
  if (!m->n_pis) {
    chart_note(f, title, "No paramount iteration in this journal.");
    return;
  }
  chart c = {0, m->end_s - m->t0_s, 0, 0};
  for (size_t i = 0; i < m->n_pis; i++)
    if (m->pis[i].wall_s > c.y1) c.y1 = m->pis[i].wall_s;
  chart_range(&c.x0, &c.x1, 1);
  chart_range(&c.y0, &c.y1, 1);
  chart_begin(f, &c, "chart-pi", title, "time since the run started (s)", "seconds per PI", 1);
  chart_switches(f, &c, m);
  chart_faults(f, &c, m);
  /* one polyline per rank per launch, coloured by node (by rank when
   * ranks share a node, as under `record`): compute time, the node's own
   * speed; dashed: the PI's total time on rank 0 */
  int by_rank = 0;
  for (size_t a = 0; a < m->n_ranks && !by_rank; a++)
    for (size_t b = a + 1; b < m->n_ranks && !by_rank; b++)
      by_rank = m->ranks[a].launch == m->ranks[b].launch && m->ranks[a].node >= 0 &&
                m->ranks[a].node == m->ranks[b].node;
  for (int pass = 0; pass < 2; pass++)
    for (size_t r = 0; r < m->n_ranks; r++) {
      if (pass == 1 && m->ranks[r].rank != 0) continue;
      size_t n = 0;
      for (size_t i = 0; i < m->n_pis; i++) n += m->pis[i].rank_idx == (int)r;
      if (!n) continue;
      size_t stride = n / SERIES_MAX_POINTS + 1, k = 0;
      int node = m->ranks[r].node;
      size_t ci = by_rank ? m->ranks[r].rank : node < 0 ? 0 : (size_t)node;
      const char *color = pass ? "#555" : palette[ci % PALETTE_N];
      fprintf(f, "<path class=\"series%s\" stroke=\"%s\" d=\"", pass ? " total" : "", color);
      for (size_t i = 0; i < m->n_pis; i++) {
        const model_pi *p = &m->pis[i];
        if (p->rank_idx != (int)r || k++ % stride) continue;
        fprintf(f, "%s%.1f %.1f", k == 1 ? "M" : " L", chart_x(&c, p->t_end_s - m->t0_s),
                chart_y(&c, pass ? p->wall_s : p->compute_s));
      }
      fputs("\"/>\n", f);
    }
  chart_end(f);
  legend_begin(f);
  unsigned max_rank = 0;
  for (size_t r = 0; r < m->n_ranks; r++)
    if (m->ranks[r].rank > max_rank) max_rank = m->ranks[r].rank;
  for (unsigned k = 0; by_rank && k <= max_rank && k < PALETTE_N; k++) {
    char label[32];
    snprintf(label, sizeof label, "rank %u", k);
    legend_item(f, palette[k], "", label, NULL);
  }
  for (size_t i = 0; !by_rank && i < m->n_nodes; i++) {
    int used = 0;
    for (size_t r = 0; r < m->n_ranks && !used; r++) used = m->ranks[r].node == (int)i;
    if (used)
      legend_item(f, palette[i % PALETTE_N], "", m->nodes[i].id,
                  html_type_label(m->nodes[i].type));
  }
  legend_item(f, "#555", " stroke-dasharray=\"4 3\"", "total PI time, rank 0",
              "compute + communication");
  fputs("<li class=\"muted\">solid: compute time of each node's rank; shaded: switch downtime</li>", f);
  if (m->n_faults)
    fputs("<li class=\"muted\">purple: a fault (node lost or job crashed), its downtime "
          "shaded; lighter before it: the work after the last checkpoint, lost</li>", f);
  legend_end(f);
}

static void chart_composition(FILE *f, const model_run *m) {
  const char *title = "Cluster composition over time";
  if (!m->n_nodes) {
    chart_note(f, title, "No node in this journal.");
    return;
  }
  chart c = {0, m->end_s - m->t0_s, 0, (double)m->n_nodes};
  for (size_t i = 0; i < m->n_nodes; i++) {
    double b, e;
    model_node_extent(m, i, &b, &e);
    if (e - m->t0_s > c.x1) c.x1 = e - m->t0_s;
  }
  chart_range(&c.x0, &c.x1, 1);
  chart_begin(f, &c, "chart-composition", title, "time since the run started (s)",
              "", 0);
  double row = (SVG_H - SVG_MT - SVG_MB) / (double)m->n_nodes;
  double bar = row * 0.7 > 28 ? 28 : row * 0.7;
  for (size_t i = 0; i < m->n_nodes; i++) {
    const model_node *n = &m->nodes[i];
    const char *color = palette[(size_t)html_type_index(m, n->type) % PALETTE_N];
    double y = SVG_MT + row * (double)i + (row - bar) / 2;
    double b, e;
    model_node_extent(m, i, &b, &e);
    if (!isfinite(b) || !isfinite(e)) continue;
    /* booting, staging, then running, each drawn only when journaled */
    double ready = isfinite(n->ready_s) ? n->ready_s : b;
    double booted = isfinite(n->booted_s) ? n->booted_s : ready;
    const double seg[3][2] = {{b, booted}, {booted, ready}, {ready, e}};
    static const char *const op[3] = {"0.3", "0.55", "1"};
    for (int s = 0; s < 3; s++) {
      if (!(seg[s][1] > seg[s][0])) continue;
      double x0 = chart_x(&c, seg[s][0] - m->t0_s), x1 = chart_x(&c, seg[s][1] - m->t0_s);
      fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" "
                 "fill-opacity=\"%s\"><title>", x0, y, x1 - x0 > 0.5 ? x1 - x0 : 0.5, bar,
              color, op[s]);
      render_html_esc(f, n->id);
      fputs(s == 0 ? ": booting" : s == 1 ? ": staging" : ": running", f);
      fputs("</title></rect>", f);
    }
    fprintf(f, "<text class=\"rowlabel\" x=\"%d\" y=\"%.1f\" text-anchor=\"end\">", SVG_ML - 6,
            y + bar / 2 + 4);
    html_esc_short(f, n->id, 8);
    fputs("<title>", f);
    render_html_esc(f, n->id);
    fputs("</title></text>\n", f);
  }
  chart_switches(f, &c, m);
  chart_faults(f, &c, m);
  chart_end(f);
  legend_begin(f);
  for (size_t t = 0; t < m->n_types; t++)
    legend_item(f, palette[t % PALETTE_N], "", html_type_label(m->types[t].type), NULL);
  fputs("<li class=\"muted\">pale: booting; medium: staging; solid: ready and running</li>", f);
  legend_end(f);
}

static void html_polyline(FILE *f, const chart *c, const double *x, const double *y, size_t n,
                          const char *cls, const char *color) {
  fprintf(f, "<path class=\"series %s\" stroke=\"%s\" d=\"", cls, color);
  size_t stride = n / SERIES_MAX_POINTS + 1;
  for (size_t i = 0, k = 0; i < n; i++) {
    if (i % stride && i != n - 1) continue;
    fprintf(f, "%s%.1f %.1f", k++ ? " L" : "M", chart_x(c, x[i]), chart_y(c, y[i]));
  }
  fputs("\"/>\n", f);
}

static void chart_cost(FILE *f, const model_run *m, const report_ideal *ideal,
                       const report_curve *cost) {
  const char *title = "Cumulative cost against the ideal run";
  if (m->cost_usd <= 0 && !ideal->known) {
    chart_note(f, title, "No node price in this journal (runs without a provider, such as "
                         "`paramount record`, have none), so there is no cost to chart.");
    return;
  }
  chart c = {0, m->end_s - m->t0_s, 0, 0};
  for (size_t i = 0; i < cost->n; i++)
    if (cost->usd[i] > c.y1) c.y1 = cost->usd[i];
  for (size_t i = 0; ideal->known && i < ideal->n; i++) {
    if (ideal->usd[i] > c.y1) c.y1 = ideal->usd[i];
    if (ideal->t_s[i] > c.x1) c.x1 = ideal->t_s[i];
  }
  chart_range(&c.x0, &c.x1, 1);
  chart_range(&c.y0, &c.y1, 1);
  chart_begin(f, &c, "chart-cost", title, "time since the run started (s)", "USD", 1);
  chart_switches(f, &c, m);
  html_polyline(f, &c, cost->t_s, cost->usd, cost->n, "cost", palette[0]);
  for (size_t i = 0; i < cost->n; i++)
    fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>",
            chart_x(&c, cost->t_s[i]), chart_y(&c, cost->usd[i]), palette[0]);
  if (ideal->known) html_polyline(f, &c, ideal->t_s, ideal->usd, ideal->n, "ideal", palette[1]);
  chart_end(f);
  legend_begin(f);
  legend_item(f, palette[0], "", "this run", "accrued while nodes exist");
  if (ideal->known)
    legend_item(f, palette[1], " stroke-dasharray=\"6 4\"",
                !strcmp(ideal->source, "run") ? "ideal run" : "ideal run (predicted)", NULL);
  fputs("<li class=\"muted\">", f);
  render_html_esc(f, ideal->note);
  if (m->cost_usd <= 0) fputs("; the journal gives no node price, so the cost is zero", f);
  fputs("</li>", f);
  legend_end(f);
}

static void chart_remaining(FILE *f, const model_run *m) {
  const char *title = "Predicted against actual remaining time, at each decision";
  size_t n = 0;
  chart c = {0, m->end_s - m->t0_s, 0, 0};
  for (size_t i = 0; i < m->n_decisions; i++) {
    const model_decision *d = &m->decisions[i];
    if (!isfinite(d->pred_remaining_s)) continue;
    n++;
    if (d->pred_remaining_s > c.y1) c.y1 = d->pred_remaining_s;
    if (d->actual_remaining_s > c.y1) c.y1 = d->actual_remaining_s;
  }
  if (!n) {
    chart_note(f, title,
               "No decision with a predicted remaining time in this journal (only `paramount "
               "run` makes decisions).");
    return;
  }
  chart_range(&c.x0, &c.x1, 1);
  chart_range(&c.y0, &c.y1, 1);
  chart_begin(f, &c, "chart-remaining", title, "decision time since the run started (s)",
              "remaining time (s)", 1);
  chart_switches(f, &c, m);
  for (int pass = 0; pass < 2; pass++) {
    const char *color = palette[pass ? 1 : 0];
    fprintf(f, "<path class=\"series\" stroke=\"%s\" d=\"", color);
    size_t k = 0;
    for (size_t i = 0; i < m->n_decisions; i++) {
      const model_decision *d = &m->decisions[i];
      if (!isfinite(d->pred_remaining_s)) continue;
      double v = pass ? d->actual_remaining_s : d->pred_remaining_s;
      fprintf(f, "%s%.1f %.1f", k++ ? " L" : "M", chart_x(&c, d->t_s - m->t0_s), chart_y(&c, v));
    }
    fputs("\"/>\n", f);
    for (size_t i = 0; i < m->n_decisions; i++) {
      const model_decision *d = &m->decisions[i];
      if (!isfinite(d->pred_remaining_s)) continue;
      double v = pass ? d->actual_remaining_s : d->pred_remaining_s;
      double x = chart_x(&c, d->t_s - m->t0_s), y = chart_y(&c, v);
      if (pass)
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"7\" height=\"7\" fill=\"%s\"/>", x - 3.5,
                y - 3.5, color);
      else
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"><title>", x, y, color);
      if (!pass) {
        render_html_esc(f, d->action);
        fputs(": ", f);
        render_html_esc(f, d->reason);
        fputs("</title></circle>", f);
      }
    }
    fputc('\n', f);
  }
  chart_end(f);
  legend_begin(f);
  legend_item(f, palette[0], "", "predicted by the policy", "the chosen option");
  legend_item(f, palette[1], "", "actual", "run end - decision time");
  legend_end(f);
}

/* ---- tables --------------------------------------------------------------- */

static void table_types(FILE *f, const model_run *m) {
  fputs("<h2>Per instance type</h2>\n<table><thead><tr><th>type</th><th>nodes</th>"
        "<th>USD/h</th><th>boot s</th><th>staging s</th><th>setup s</th>"
        "<th>app init s</th><th>epoch s</th><th>epochs</th></tr></thead><tbody>\n", f);
  for (size_t i = 0; i < m->n_types; i++) {
    const model_type *t = &m->types[i];
    fputs("<tr><td>", f);
    render_html_esc(f, html_type_label(t->type));
    fprintf(f, "</td><td>%d</td><td>", t->n_nodes);
    html_num(f, t->price_usd_per_hour, 4);
    fputs("</td><td>", f);
    html_num(f, t->boot_s, 2);
    fputs("</td><td>", f);
    html_num(f, t->stage_s, 3);
    fputs("</td><td>", f);
    html_num(f, t->setup_s, 2);
    fputs("</td><td>", f);
    html_num(f, t->init_s, 3);
    fputs("</td><td>", f);
    html_num(f, t->epoch_s, 3);
    fprintf(f, "</td><td>%d</td></tr>\n", t->n_epochs);
  }
  fputs("</tbody></table>\n", f);
  fputs("<h2>Steady PI time per type and phase</h2>\n<table><thead><tr><th>type</th>"
        "<th class=\"l\">phase</th><th>steady PI s</th><th>95% CI</th><th>compute s</th><th>comm s</th>"
        "<th>PIs</th><th>warm-up PIs</th><th>steady</th></tr></thead><tbody>\n", f);
  for (size_t i = 0; i < m->n_steady; i++) {
    const model_steady *s = &m->steady[i];
    fputs("<tr><td>", f);
    render_html_esc(f, html_type_label(s->type));
    fputs("</td><td class=\"l\">", f);
    render_html_esc(f, s->phase[0] ? s->phase : "(default)");
    fputs("</td><td>", f);
    html_num(f, s->pi_s, 4);
    fputs("</td><td>", f);
    html_num(f, s->pi_lo_s, 4);
    fputs(" &ndash; ", f);
    html_num(f, s->pi_hi_s, 4);
    fputs("</td><td>", f);
    html_num(f, s->compute_s, 4);
    fputs("</td><td>", f);
    html_num(f, s->comm_s, 4);
    fprintf(f, "</td><td>%zu</td><td>%zu</td><td>%s</td></tr>\n", s->n_pis, s->warmup_pis,
            s->steady ? "yes" : "no");
  }
  fputs("</tbody></table>\n", f);
}

static void table_switches(FILE *f, const model_run *m) {
  fputs("<h2>Switches</h2>\n", f);
  if (!m->n_switches) {
    fputs("<p class=\"note\">The job ran on one node set; no switch.</p>\n", f);
    return;
  }
  fputs("<table><thead><tr><th>#</th><th class=\"l\">from</th><th class=\"l\">to</th><th>at s</th>"
        "<th>new nodes&#39; setup s</th><th>checkpoint s</th><th>restart s</th><th>re-init s</th><th>downtime s</th>"
        "</tr></thead><tbody>\n", f);
  for (size_t i = 0; i < m->n_switches; i++) {
    const model_switch *s = &m->switches[i];
    fprintf(f, "<tr><td>%zu</td><td class=\"l\">", i + 1);
    render_html_esc(f, s->from);
    fputs("</td><td class=\"l\">", f);
    render_html_esc(f, s->to);
    fputs("</td><td>", f);
    html_num(f, s->last_old_pi_s - m->t0_s, 1);
    fputs("</td><td>", f);
    html_num(f, s->setup_s, 2);
    fputs("</td><td>", f);
    html_num(f, s->checkpoint_s, 3);
    fputs("</td><td>", f);
    html_num(f, s->restart_s, 3);
    fputs("</td><td>", f);
    html_num(f, s->reinit_s, 3);
    fputs("</td><td>", f);
    html_num(f, s->downtime_s, 3);
    fputs("</td></tr>\n", f);
  }
  fputs("</tbody></table>\n<p class=\"note\">Downtime: end of the last PI on the old "
        "node set to the start of the first PI on the new one = checkpoint + restart "
        "(relaunch up to the ranks' init) + re-init (init to the first PI).  The new "
        "nodes' setup is paid while the old set keeps training.</p>\n", f);
}

/* "n2 (eff), n5 (eff)": node ids with their types, escaped. */
static void html_node_list(FILE *f, const model_run *m, const int *idx, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (i) fputs(", ", f);
    render_html_esc(f, m->nodes[idx[i]].id);
    if (m->nodes[idx[i]].type[0]) {
      fputs(" (", f);
      render_html_esc(f, m->nodes[idx[i]].type);
      fputc(')', f);
    }
  }
}

static void table_faults(FILE *f, const model_run *m) {
  fputs("<h2>Faults</h2>\n", f);
  if (!m->n_faults) {
    fputs("<p class=\"note\">No node was lost and the job never crashed.</p>\n", f);
    return;
  }
  fputs("<table id=\"faults\"><thead><tr><th>#</th><th>at s</th><th class=\"l\">lost</th>"
        "<th>iterations lost</th><th>resumed at iteration</th><th>checkpoint interval</th>"
        "<th>downtime s</th><th class=\"l\">replacement</th><th>cost USD</th>"
        "<th>lost nodes USD</th><th>survivors USD</th><th>replacement USD</th>"
        "</tr></thead><tbody>\n", f);
  for (size_t i = 0; i < m->n_faults; i++) {
    const model_fault *x = &m->faults[i];
    fprintf(f, "<tr><td>%zu</td><td>", i + 1);
    html_num(f, x->lost_s - m->t0_s, 1);
    fputs("</td><td class=\"l\">", f);
    if (x->n_lost) html_node_list(f, m, x->lost, x->n_lost);
    else render_html_esc(f, x->what);
    fprintf(f, "</td><td>%llu</td><td>%llu</td><td>", (unsigned long long)x->iters_lost,
            (unsigned long long)x->resume_iter);
    if (x->interval) {
      fprintf(f, "%llu (%s)%s", (unsigned long long)x->interval,
              x->interval_from_config ? "config" : "seen",
              x->iters_lost > x->interval ? " <b class=\"bad\">exceeded</b>" : "");
    } else {
      fputs("none", f);
    }
    fputs("</td><td>", f);
    html_num(f, x->downtime_s, 3);
    fputs("</td><td class=\"l\">", f);
    if (x->n_repl) html_node_list(f, m, x->repl, x->n_repl);
    else fputs(x->n_lost ? "none: continued on the survivors" : "none needed", f);
    fputs("</td><td>", f);
    html_num(f, x->cost_usd, 6);
    fputs("</td><td>", f);
    html_num(f, x->lost_usd, 6);
    fputs("</td><td>", f);
    html_num(f, x->survivors_usd, 6);
    fputs("</td><td>", f);
    html_num(f, x->replacement_usd, 6);
    fputs("</td></tr>\n", f);
  }
  fputs("</tbody></table>\n<p class=\"note\">Iterations lost: the last PI before the fault "
        "+ 1 &minus; the iteration the job resumed at (the one after its last checkpoint); "
        "at most the checkpoint interval (from job.checkpoint_every, else the widest gap "
        "between the checkpoints seen).  Downtime: end of the last PI before the fault to "
        "the start of the first PI after it.  Cost: what was paid for nothing, by the "
        "second without billing granularity: the lost nodes from the end of the last PI "
        "the checkpoint kept to their termination, the surviving nodes from that PI to the "
        "first PI after the fault (their lost work and the downtime), and the replacements "
        "from their request to that first PI (setup, then the relaunch).</p>\n", f);
}

static void table_decisions(FILE *f, const model_run *m) {
  fputs("<h2>Decisions</h2>\n", f);
  if (!m->n_decisions) {
    fputs("<p class=\"note\">No policy decision in this journal.</p>\n", f);
    return;
  }
  fputs("<table><thead><tr><th>at s</th><th>action</th><th>target</th>"
        "<th>predicted remaining s</th><th>actual remaining s</th><th>error</th>"
        "<th>predicted remaining USD</th><th class=\"l\">reason</th></tr></thead><tbody>\n", f);
  for (size_t i = 0; i < m->n_decisions; i++) {
    const model_decision *d = &m->decisions[i];
    fputs("<tr><td>", f);
    html_num(f, d->t_s - m->t0_s, 1);
    fputs("</td><td>", f);
    render_html_esc(f, d->action);
    fputs("</td><td>", f);
    if (d->has_target && d->target_type[0]) {
      fprintf(f, "%d x ", d->target_nodes);
      render_html_esc(f, d->target_type);
    }
    fputs("</td><td>", f);
    html_num(f, d->pred_remaining_s, 1);
    fputs("</td><td>", f);
    html_num(f, d->actual_remaining_s, 1);
    fputs("</td><td>", f);
    if (isfinite(d->pred_remaining_s) && d->actual_remaining_s > 0)
      fprintf(f, "%+.0f%%", (d->pred_remaining_s / d->actual_remaining_s - 1) * 100);
    fputs("</td><td>", f);
    html_num(f, d->pred_cost_usd, 4);
    fputs("</td><td class=\"l\">", f);
    render_html_esc(f, d->reason);
    fputs("</td></tr>\n", f);
  }
  fputs("</tbody></table>\n", f);
}

static void table_nodes(FILE *f, const model_run *m) {
  fputs("<h2>Nodes</h2>\n<table><thead><tr><th>node</th><th>type</th><th>requested at s</th>"
        "<th>boot s</th><th>staging s</th><th>setup s</th><th>terminated at s</th>"
        "<th>cost USD</th></tr></thead><tbody>\n", f);
  for (size_t i = 0; i < m->n_nodes; i++) {
    const model_node *n = &m->nodes[i];
    fputs("<tr><td>", f);
    render_html_esc(f, n->id);
    fputs("</td><td>", f);
    render_html_esc(f, html_type_label(n->type));
    fputs("</td><td>", f);
    html_num(f, n->requested_s - m->t0_s, 1);
    fputs("</td><td>", f);
    html_num(f, n->booted_s - n->requested_s, 2);
    fputs("</td><td>", f);
    html_num(f, n->staged_s - n->booted_s, 3);
    fputs("</td><td>", f);
    html_num(f, n->ready_s - n->requested_s, 2);
    fputs("</td><td>", f);
    html_num(f, n->terminated_s - m->t0_s, 1);
    fputs("</td><td>", f);
    html_num(f, n->cost_usd, 4);
    fputs("</td></tr>\n", f);
  }
  fputs("</tbody></table>\n", f);
}

/* ---- page ------------------------------------------------------------------ */

static const char html_css[] =
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#222;"
    "max-width:1000px;margin:24px auto;padding:0 16px}"
    "h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}"
    ".path{color:#666;word-break:break-all}"
    ".summary{display:flex;flex-wrap:wrap;gap:8px 24px;margin:12px 0;padding:0;list-style:none}"
    ".summary b{display:block;font-size:18px}"
    ".warn{background:#fff4d6;border-left:4px solid #e0a800;padding:6px 10px}"
    "figure.chart{margin:20px 0;break-inside:avoid}figcaption{font-weight:600;margin-bottom:4px}"
    "svg{display:block;width:100%;height:auto}"
    ".grid line{stroke:#e6e6e6}.axis path{stroke:#444;fill:none}"
    ".axis text,.rowlabel{font-size:11px;fill:#444}"
    ".series{fill:none;stroke-width:1.6;stroke-linejoin:round}"
    ".series.total{stroke-dasharray:4 3}.series.ideal{stroke-dasharray:6 4;stroke-width:2}"
    ".switch{stroke:#c0392b;stroke-dasharray:5 3;fill:#c0392b;font-size:11px}"
    "text.switch{stroke:none}.downtime{fill:#c0392b;fill-opacity:.12}"
    ".fault{stroke:#7b2d9b;stroke-width:2;fill:#7b2d9b;font-size:11px}text.fault{stroke:none}"
    ".faultdown{fill:#7b2d9b;fill-opacity:.16}.lostwork{fill:#7b2d9b;fill-opacity:.07}"
    ".bad{color:#c0392b}"
    ".legend{list-style:none;padding:0;margin:4px 0;display:flex;flex-wrap:wrap;gap:4px 16px;"
    "font-size:12px}.legend svg{display:inline;width:22px;vertical-align:middle;margin-right:4px}"
    ".muted,.note{color:#666}"
    "table{border-collapse:collapse;width:100%;font-size:13px;break-inside:avoid}"
    "th,td{border-bottom:1px solid #ddd;padding:3px 6px;text-align:right}"
    "th:first-child,td:first-child,.l{text-align:left}"
    "thead th{background:#f4f4f4}"
    "@media print{body{margin:0;max-width:none;font-size:10pt}figure.chart,table{"
    "break-inside:avoid;page-break-inside:avoid}h2{break-after:avoid}a{color:inherit}"
    ".warn{border:1px solid #e0a800}}";

int render_html(const model_run *m, const report_ideal *ideal, const report_curve *cost,
                const char *run_dir, const char *warn, FILE *f) {
  fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n"
        "<title>Paramount run report</title>\n<style>", f);
  fputs(html_css, f);
  fputs("</style></head><body>\n<h1>Paramount run report</h1>\n<div class=\"path\">", f);
  render_html_esc(f, run_dir);
  fputs("</div>\n", f);
  if (warn) {
    fputs("<p class=\"warn\">", f);
    render_html_esc(f, warn);
    fputs("</p>\n", f);
  }
  double dur = m->end_s - m->t0_s;
  fputs("<ul class=\"summary\">", f);
  fputs("<li>duration<b>", f);
  html_num(f, dur, 1);
  fputs(" s</b></li><li>cost<b>", f);
  html_num(f, m->cost_usd, 4);
  fprintf(f, " USD</b></li><li>nodes<b>%zu</b></li><li>launches<b>%d</b></li>"
             "<li>switches<b>%zu</b></li><li>faults<b>%zu</b></li><li>PIs<b>%zu</b></li>"
             "<li>decisions<b>%zu</b></li>",
          m->n_nodes, m->n_launches, m->n_switches, m->n_faults, m->n_pis, m->n_decisions);
  if (ideal->known && ideal->cost_usd > 0) {
    fputs("<li>cost / ideal<b>", f);
    html_num(f, m->cost_usd / ideal->cost_usd, 2);
    fputs("</b></li>", f);
  }
  if (ideal->known && ideal->duration_s > 0) {
    fputs("<li>time / ideal<b>", f);
    html_num(f, dur / ideal->duration_s, 2);
    fputs("</b></li>", f);
  }
  fputs("</ul>\n", f);
  chart_pi(f, m);
  chart_composition(f, m);
  chart_cost(f, m, ideal, cost);
  chart_remaining(f, m);
  table_types(f, m);
  table_switches(f, m);
  table_faults(f, m);
  table_decisions(f, m);
  table_nodes(f, m);
  fprintf(f, "<p class=\"muted\">Rebuilt from journal.jsonl (%ld records, %ld used) by "
             "<code>paramount report</code>; metrics.csv and report.json beside this file "
             "hold the same numbers.</p>\n</body></html>\n",
          m->records, m->known_records);
  return ferror(f) ? PM_EIO : 0;
}
