/* bench_policy.c - the canonical scenario in a tiny discrete-time model:
 * 3 heterogeneous nodes at start, paramount's policy vs clap-bot vs the
 * static heterogeneous cluster, against the ideal run (the best
 * homogeneous 3-node cluster from the start), for several job lengths.
 * A model-level sanity check of the policy, not an end-to-end bench.
 * Usage: bench_policy [seeds]   (default 5; prints mean ratios)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

/* ---- the model -------------------------------------------------------- */

typedef struct {
  const char *name;
  double spp; /* true compute s/sample of one rank */
  double price_usd_per_hour, setup_s, hint;
} model_type;

static const model_type TYPES[] = {{"small", 0.10, 0.10, 60, 1},
                                   {"medium", 0.045, 0.17, 60, 2},
                                   {"large", 0.02, 0.40, 60, 4.5}};
#define NTYPES 3
#define GLOBAL_BATCH 48.0
#define COMM_BW_S 0.075 /* allreduce(n) = bw * 2(n-1)/n: 0.1 s at n=3 */
#define NOISE 0.03
#define CHECKPOINT_S 5.0
#define RESTART_S 10.0 /* relaunch + init to the first PI */
#define DECIDE_EVERY 5 /* PIs between two calls of the policy */
#define MAX_SERIES 64

typedef struct {
  uint64_t s;
} rng_t;

static double urand(rng_t *r) {
  r->s ^= r->s >> 12;
  r->s ^= r->s << 25;
  r->s ^= r->s >> 27;
  return (double)((r->s * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static double gauss(rng_t *r) {
  double u = urand(r), v = urand(r);
  if (u < 1e-12) u = 1e-12;
  return sqrt(-2 * log(u)) * cos(2 * 3.14159265358979 * v);
}

static const model_type *type_of(const char *name) {
  for (int i = 0; i < NTYPES; i++)
    if (!strcmp(TYPES[i].name, name)) return &TYPES[i];
  return NULL;
}

static double billed_usd(const char *type, double alive_s, double gran_s) {
  if (alive_s <= 0) return 0;
  double k = ceil(alive_s / gran_s - 1e-9);
  return (k < 1 ? 1 : k) * gran_s * type_of(type)->price_usd_per_hour / 3600;
}

typedef struct {
  double time_s, cost_usd;
  int switches;
  char final[64];
} run_result;

typedef struct {
  policy_series_t series[MAX_SERIES];
  policy_pi_t *pis[MAX_SERIES];
  size_t n_series;
} store_t;

/* Runs a job of `iters` PIs from `start` (3 type names) under `policy`. */
static int run_job(const char *const *start, double iters, policy_kind_t kind,
                   double gran_s, uint64_t seed, run_result *out) {
  rng_t rng = {seed * 0x9E3779B97F4A7C15ULL + 7};
  policy_type_t cat[NTYPES];
  for (int i = 0; i < NTYPES; i++)
    cat[i] = (policy_type_t){TYPES[i].name, TYPES[i].price_usd_per_hour,
                             gran_s, TYPES[i].setup_s, TYPES[i].hint, 0, 0};
  policy_cfg_t cfg;
  policy_cfg_default(&cfg);
  cfg.kind = kind;
  policy_node_t nodes[POLICY_MAX_NODES];
  size_t n_nodes = 3;
  for (int i = 0; i < 3; i++) nodes[i] = (policy_node_t){start[i], 0};
  store_t st;
  memset(&st, 0, sizeof st);
  policy_decision_t *d = malloc(sizeof *d);
  if (!d) return -1;

  double setup = 0;
  for (int i = 0; i < 3; i++)
    if (type_of(start[i])->setup_s > setup) setup = type_of(start[i])->setup_s;
  double t = setup + RESTART_S, gone_usd = 0, last_change = t;
  double done = 0;
  int launch = 0, pi_in_launch = 0, switches = 0;
  size_t s0 = 0; /* first series of the current launch */
  int pending = 0;
  double ready_s = 0;
  policy_node_t next[POLICY_MAX_NODES];
  size_t n_next = 0;

  /* series for the first launch */
  for (size_t r = 0; r < n_nodes; r++) {
    st.pis[st.n_series] = malloc(sizeof(policy_pi_t) * (size_t)(iters + 1));
    st.series[st.n_series] = (policy_series_t){
        nodes[r].type, NULL, launch, (int)n_nodes,
        GLOBAL_BATCH / (double)n_nodes, st.pis[st.n_series], 0};
    st.n_series++;
  }
  while (done < iters) {
    size_t n = n_nodes;
    double per_rank = GLOBAL_BATCH / (double)n, c[POLICY_MAX_NODES], worst = 0;
    double warm = 1 + 1.5 * exp(-pi_in_launch / 2.0);
    for (size_t r = 0; r < n; r++) {
      double e = 1 + NOISE * gauss(&rng);
      c[r] = type_of(nodes[r].type)->spp * per_rank * warm * (e > 0.5 ? e : 0.5);
      if (c[r] > worst) worst = c[r];
    }
    double ar = n > 1 ? COMM_BW_S * 2 * (double)(n - 1) / (double)n *
                            (1 + 0.02 * gauss(&rng))
                      : 0;
    t += worst + ar;
    for (size_t r = 0; r < n; r++) {
      policy_series_t *s = &st.series[s0 + r];
      st.pis[s0 + r][s->n_pis++] = (policy_pi_t){t, c[r], ar + worst - c[r],
                                                 per_rank};
    }
    done += 1;
    pi_in_launch++;
    if (done >= iters) break;

    if (pending && t >= ready_s) { /* make-before-break cutover */
      for (size_t i = 0; i < n_nodes; i++) {
        int stays = 0;
        for (size_t j = 0; j < n_next; j++)
          if (next[j].requested_s == nodes[i].requested_s &&
              !strcmp(next[j].type, nodes[i].type))
            stays = 1;
        if (!stays)
          gone_usd += billed_usd(nodes[i].type,
                                 t + CHECKPOINT_S - nodes[i].requested_s,
                                 gran_s);
      }
      memcpy(nodes, next, sizeof(policy_node_t) * n_next);
      n_nodes = n_next;
      t += CHECKPOINT_S + RESTART_S;
      last_change = t;
      launch++;
      pi_in_launch = 0;
      switches++;
      pending = 0;
      s0 = st.n_series;
      if (st.n_series + n_nodes > MAX_SERIES) break;
      for (size_t r = 0; r < n_nodes; r++) {
        st.pis[st.n_series] =
            malloc(sizeof(policy_pi_t) * (size_t)(iters + 1));
        st.series[st.n_series] = (policy_series_t){
            nodes[r].type, NULL, launch, (int)n_nodes,
            GLOBAL_BATCH / (double)n_nodes, st.pis[st.n_series], 0};
        st.n_series++;
      }
      continue;
    }
    if (pending || kind == POLICY_STATIC || pi_in_launch % DECIDE_EVERY)
      continue;

    double spent = gone_usd;
    for (size_t i = 0; i < n_nodes; i++)
      spent += billed_usd(nodes[i].type, t - nodes[i].requested_s, gran_s);
    policy_phase_t ph = {NULL, iters, done};
    policy_input_t in = {.now_s = t,
                         .series = st.series,
                         .n_series = st.n_series,
                         .types = cat,
                         .n_types = NTYPES,
                         .nodes = nodes,
                         .n_nodes = n_nodes,
                         .phases = &ph,
                         .n_phases = 1,
                         .scaling = POLICY_SCALE_GLOBAL_BATCH,
                         .batch = GLOBAL_BATCH,
                         .spent_usd = spent,
                         .checkpoint_s = CHECKPOINT_S,
                         .restart_s = RESTART_S,
                         .last_change_s = last_change,
                         .n_switches = switches};
    int rc = policy_decide(&in, &cfg, d);
    if (rc) {
      fprintf(stderr, "bench_policy: policy_decide: %d\n", rc);
      break;
    }
    if (d->action != POLICY_SWITCH) continue;
    n_next = 0;
    for (size_t i = 0; i < n_nodes; i++) {
      int removed = 0;
      for (int j = 0; j < d->n_remove; j++) removed |= d->remove[j] == (int)i;
      if (!removed) next[n_next++] = nodes[i];
    }
    const model_type *add = type_of(d->add_type);
    for (int j = 0; j < d->add_count && add; j++)
      next[n_next++] = (policy_node_t){add->name, t};
    pending = 1;
    ready_s = t + (d->add_count > 0 && add ? add->setup_s : 0);
  }
  double cost = gone_usd;
  for (size_t i = 0; i < n_nodes; i++)
    cost += billed_usd(nodes[i].type, t - nodes[i].requested_s, gran_s);
  if (pending)
    for (size_t j = 0; j < n_next; j++)
    {
      int cur = 0; /* requested for a cutover that never came */
      for (size_t i = 0; i < n_nodes; i++)
        cur |= next[j].requested_s == nodes[i].requested_s &&
               !strcmp(next[j].type, nodes[i].type);
      if (!cur)
        cost += billed_usd(next[j].type, t - next[j].requested_s, gran_s);
    }
  out->time_s = t;
  out->cost_usd = cost;
  out->switches = switches;
  out->final[0] = '\0';
  for (size_t i = 0; i < n_nodes; i++) {
    strncat(out->final, nodes[i].type, sizeof out->final - strlen(out->final) - 2);
    if (i + 1 < n_nodes) strncat(out->final, ",", sizeof out->final - strlen(out->final) - 1);
  }
  for (size_t i = 0; i < st.n_series; i++) free(st.pis[i]);
  free(d);
  return 0;
}

int main(int argc, char **argv) {
  int seeds = argc > 1 ? atoi(argv[1]) : 5;
  if (seeds < 1) seeds = 1;
  static const char *const HETERO[] = {"small", "medium", "large"};
  static const double factors[] = {2, 5, 10, 20, 50, 100};
  double grans[] = {1, 3600};
  printf("canonical scenario: start on 3 nodes small,medium,large; global "
         "batch %.0f; setup %.0f s; ckpt %.0f s + restart %.0f s; %d seeds\n",
         GLOBAL_BATCH, TYPES[0].setup_s, CHECKPOINT_S, RESTART_S, seeds);
  for (int g = 0; g < 2; g++) {
    printf("\nbilling granularity %.0f s\n", grans[g]);
    printf("%-8s %-7s %-10s %-9s %-9s | %-16s %-8s | %-16s %-8s | %-11s\n",
           "ideal/su", "iters", "ideal", "ideal$", "ideal_s", "paramount $,t",
           "switch", "clap-bot $,t", "switch", "static $,t");
    for (size_t f = 0; f < sizeof factors / sizeof factors[0]; f++) {
      /* Iterations so that the ideal run (3 x medium) lasts f x setup. */
      double pi_ideal = TYPES[1].spp * GLOBAL_BATCH / 3 + COMM_BW_S * 4 / 3;
      double iters = floor((factors[f] * TYPES[0].setup_s - TYPES[0].setup_s -
                            RESTART_S) / pi_ideal);
      if (iters < 10) iters = 10;
      double sum[3][2] = {{0}}, sw[3] = {0};
      double ideal_c = 0, ideal_t = 0;
      const char *ideal_type = "";
      char fin[64] = "";
      for (int s = 1; s <= seeds; s++) {
        /* The oracle: the best homogeneous 3-node cluster, static. */
        double best_c = INFINITY, best_t = 0;
        for (int k = 0; k < NTYPES; k++) {
          const char *h[3] = {TYPES[k].name, TYPES[k].name, TYPES[k].name};
          run_result r;
          if (run_job(h, iters, POLICY_STATIC, grans[g], (uint64_t)s, &r))
            return 1;
          if (r.cost_usd < best_c) {
            best_c = r.cost_usd;
            best_t = r.time_s;
            ideal_type = TYPES[k].name;
          }
        }
        ideal_c += best_c / seeds;
        ideal_t += best_t / seeds;
        policy_kind_t kinds[3] = {POLICY_PARAMOUNT, POLICY_CLAP_BOT,
                                  POLICY_STATIC};
        for (int k = 0; k < 3; k++) {
          run_result r;
          if (run_job(HETERO, iters, kinds[k], grans[g], (uint64_t)s, &r))
            return 1;
          sum[k][0] += r.cost_usd / best_c / seeds;
          sum[k][1] += r.time_s / best_t / seeds;
          sw[k] += (double)r.switches / seeds;
          if (k == 0 && s == 1) snprintf(fin, sizeof fin, "%s", r.final);
        }
      }
      printf("%-8.0f %-7.0f %-10s %-9.4f %-9.0f | %6.3f %6.3f    %-8.1f | "
             "%6.3f %6.3f    %-8.1f | %5.3f %5.3f   paramount ends on %s\n",
             factors[f], iters, ideal_type, ideal_c, ideal_t, sum[0][0],
             sum[0][1], sw[0], sum[1][0], sum[1][1], sw[1], sum[2][0],
             sum[2][1], fin);
    }
  }
  printf("\nratios are run / ideal (cost, time), means over seeds; "
         "ideal/su = ideal run length in setup times\n");
  return 0;
}
