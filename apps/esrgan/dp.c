/* dp.c - the MPI side of data-parallel ESRGAN training (see dp.h).
 *
 * Everything batch-coupled is computed over the global batch: gradients
 * are summed (losses are already normalised by the global count), the
 * discriminator's BatchNorm uses global batch statistics ("sync BN") in
 * forward and backward, and the RaGAN batch means of the logits are
 * global.  So P ranks x batch B/P compute what 1 rank x batch B does, up
 * to floating-point reordering.  A rank with no sample in the global batch
 * contributes zeros but joins every collective, in the same order.
 */
#include "dp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "paramount.h"

#ifndef ESR_NO_MPI
#include <mpi.h>
#endif

#define BN_EPS 1e-5 /* nn.c's, PyTorch's */

static double dp_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int esr_dp_env_rank(void) {
  const char *vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"};
  for (int i = 0; i < 3; i++) {
    const char *v = getenv(vars[i]);
    if (v && *v) return atoi(v);
  }
  return 0;
}

static int dp_launched(void) {
  const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"};
  for (int i = 0; i < 3; i++)
    if (getenv(vars[i])) return 1;
  return 0;
}

/* ---- collectives, timed as communication ------------------------------- */

#ifndef ESR_NO_MPI
/* MPI_Allreduce that waits without spinning: Open MPI busy-polls in a
 * blocking collective, which on a CPU-quota node spends the quota (and on
 * a shared host the other ranks' cores) on waiting, so the compute after
 * it is throttled and a rank's compute time stops telling its speed.
 * Polling with 20 us naps costs at most that much latency per call. */
static int dp_allreduce(void *buf, int n, MPI_Datatype type) {
  MPI_Request req;
  int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, n, type, MPI_SUM, MPI_COMM_WORLD, &req);
  if (rc != MPI_SUCCESS) return rc;
  for (int done = 0;;) {
    if ((rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE)) != MPI_SUCCESS || done) return rc;
    struct timespec nap = {0, 20000};
    nanosleep(&nap, NULL);
  }
}
#endif

/* Sums n doubles over the ranks in place. */
static int dp_sum_d(esr_dp *dp, double *buf, size_t n) {
  if (dp->size == 1 || n == 0) return 0;
#ifndef ESR_NO_MPI
  double t0 = dp_now_s();
  int rc = dp_allreduce(buf, (int)n, MPI_DOUBLE);
  dp->comm_s += dp_now_s() - t0;
  if (rc != MPI_SUCCESS) {
    nn_seterr("MPI_Allreduce of %zu doubles failed (%d)", n, rc);
    return PM_EIO;
  }
#endif
  return 0;
}

/* The gradient hook: sums a network's flat gradient buffer over the ranks
 * (the losses carry the 1/global-count, so a sum is the average). */
static int dp_grad_hook(void *user, float *grads, size_t n) {
  esr_dp *dp = user;
  if (dp->n == 0) memset(grads, 0, n * sizeof(float));
  if (dp->size == 1) return 0;
#ifndef ESR_NO_MPI
  double t0 = dp_now_s();
  for (size_t off = 0; off < n;) {
    size_t k = n - off > (1u << 30) ? (1u << 30) : n - off;
    int rc = dp_allreduce(grads + off, (int)k, MPI_FLOAT);
    if (rc != MPI_SUCCESS) {
      nn_seterr("MPI_Allreduce of %zu gradients failed (%d)", k, rc);
      return PM_EIO;
    }
    off += k;
  }
  dp->comm_s += dp_now_s() - t0;
#endif
  return 0;
}

/* ---- sync BatchNorm on nChw16c tensors --------------------------------- */

/* Per channel: local sums of x and x^2 -> global mean and biased variance
 * (what oneDNN's training forward computes over one batch), then
 * y = gamma (x - mean) / sqrt(var + eps) + beta over the local tensor. */
static int dp_bn_forward(void *user, nn_bn *bn, nn_tensor *x, nn_tensor *y, nn_bn_stats *st) {
  esr_dp *dp = user;
  int C = bn->c, N = x->n, HW = x->h * x->w, CB = (C + 15) / 16;
  double *s = calloc(2 * (size_t)C, sizeof(double));
  if (!s) {
    nn_seterr("out of memory for batch norm sums");
    return PM_ENOMEM;
  }
  if (dp->n > 0) {
#pragma omp parallel for schedule(static)
    for (int cb = 0; cb < CB; cb++) {
      int nj = C - cb * 16 < 16 ? C - cb * 16 : 16;
      for (int j = 0; j < nj; j++) {
        double a = 0, b = 0;
        for (int n = 0; n < N; n++) {
          const float *p = x->data + nn_off(x, n, cb * 16, 0, 0) + j;
          for (int q = 0; q < HW; q++) {
            double v = p[(size_t)q * 16];
            a += v, b += v * v;
          }
        }
        s[cb * 16 + j] = a, s[C + cb * 16 + j] = b;
      }
    }
  }
  int rc = dp_sum_d(dp, s, 2 * (size_t)C);
  if (rc) goto out;
  double M = (double)dp->gbatch * HW;
  for (int c = 0; c < C; c++) {
    double mean = s[c] / M, var = s[C + c] / M - mean * mean;
    st->mean[c] = (float)mean;
    st->var[c] = (float)(var > 0 ? var : 0);
  }
#pragma omp parallel for schedule(static)
  for (int cb = 0; cb < CB; cb++) {
    int nj = C - cb * 16 < 16 ? C - cb * 16 : 16;
    for (int j = 0; j < nj; j++) {
      int c = cb * 16 + j;
      float k = bn->gamma[c] / sqrtf(st->var[c] + (float)BN_EPS), m = st->mean[c],
            b = bn->beta[c];
      for (int n = 0; n < N; n++) {
        size_t o = nn_off(x, n, cb * 16, 0, 0) + (size_t)j;
        for (int q = 0; q < HW; q++) y->data[o + (size_t)q * 16] = k * (x->data[o + (size_t)q * 16] - m) + b;
      }
    }
  }
  bn->gcount = M; /* the running variance's unbiasing uses the global count */
  nn_bn_update_running(bn, st);
out:
  free(s);
  return rc;
}

/* dx = gamma/sigma (dy - mean(dy) - xhat mean(dy xhat)), the means over
 * the global batch; gamma/beta grads get this rank's sums (the gradient
 * all-reduce adds the other ranks'). dx may alias dy. */
static int dp_bn_backward(void *user, nn_bn *bn, nn_tensor *x, nn_bn_stats *st, nn_tensor *dy,
                          nn_tensor *dx, int weights) {
  esr_dp *dp = user;
  int C = bn->c, N = x->n, HW = x->h * x->w, CB = (C + 15) / 16;
  double *s = calloc(4 * (size_t)C, sizeof(double));
  if (!s) {
    nn_seterr("out of memory for batch norm sums");
    return PM_ENOMEM;
  }
  if (dp->n > 0) {
#pragma omp parallel for schedule(static)
    for (int cb = 0; cb < CB; cb++) {
      int nj = C - cb * 16 < 16 ? C - cb * 16 : 16;
      for (int j = 0; j < nj; j++) {
        int c = cb * 16 + j;
        double a = 0, b = 0, m = st->mean[c], is = 1.0 / sqrt((double)st->var[c] + BN_EPS);
        for (int n = 0; n < N; n++) {
          size_t o = nn_off(x, n, cb * 16, 0, 0) + (size_t)j;
          for (int q = 0; q < HW; q++) {
            double g = dy->data[o + (size_t)q * 16];
            a += g, b += g * (x->data[o + (size_t)q * 16] - m) * is;
          }
        }
        s[c] = a, s[C + c] = b;
      }
    }
  }
  memcpy(s + 2 * C, s, 2 * (size_t)C * sizeof(double)); /* keep the local sums */
  int rc = dp_sum_d(dp, s, 2 * (size_t)C);
  if (rc) goto out;
  double M = (double)dp->gbatch * HW;
#pragma omp parallel for schedule(static)
  for (int cb = 0; cb < CB; cb++) {
    int nj = C - cb * 16 < 16 ? C - cb * 16 : 16;
    for (int j = 0; j < nj; j++) {
      int c = cb * 16 + j;
      float is = (float)(1.0 / sqrt((double)st->var[c] + BN_EPS)), m = st->mean[c];
      float k = bn->gamma[c] * is, mdy = (float)(s[c] / M), mdyx = (float)(s[C + c] / M);
      for (int n = 0; n < N; n++) {
        size_t o = nn_off(x, n, cb * 16, 0, 0) + (size_t)j;
        for (int q = 0; q < HW; q++) {
          size_t i = o + (size_t)q * 16;
          float xh = (x->data[i] - m) * is;
          dx->data[i] = k * (dy->data[i] - mdy - xh * mdyx);
        }
      }
    }
  }
  if (weights)
    for (int c = 0; c < C; c++) {
      bn->gbeta[c] += (float)s[2 * C + c];
      bn->ggamma[c] += (float)s[3 * C + c];
    }
out:
  free(s);
  return rc;
}

/* ---- RaGAN losses over the global batch -------------------------------- */

static double bce(double z, double t) { return (z > 0 ? z : 0) - z * t + log1p(exp(-fabs(z))); }
static double sigm(double z) { return 1.0 / (1.0 + exp(-z)); }

/* Adds this rank's logits at each patch position into sum[hw]. */
static void logit_sums(const esr_dp *dp, const nn_tensor *t, double *sum) {
  if (dp->n == 0) return;
  for (int n = 0; n < t->n; n++)
    for (int p = 0; p < t->h * t->w; p++) sum[p] += t->data[nn_off(t, n, 0, p / t->w, p % t->w)];
}

static double dp_ragan_g(void *user, const nn_tensor *real, const nn_tensor *fake,
                         nn_tensor *d_fake, float w) {
  esr_dp *dp = user;
  int hw = real->h * real->w, N = real->n, W = real->w;
  double count = (double)dp->gbatch * hw, loss = 0;
  double *mr = calloc((size_t)hw, sizeof(double));
  if (!mr) return NAN; /* the caller stops on a non-finite loss */
  logit_sums(dp, real, mr);
  if (dp_sum_d(dp, mr, (size_t)hw)) {
    free(mr);
    return NAN;
  }
  for (int p = 0; p < hw; p++) mr[p] /= dp->gbatch;
  nn_zero(d_fake);
  if (dp->n > 0)
    for (int n = 0; n < N; n++)
      for (int p = 0; p < hw; p++) {
        size_t o = nn_off(fake, n, 0, p / W, p % W);
        double z = fake->data[o] - mr[p];
        loss += bce(z, 1.0);
        d_fake->data[o] = (float)(w * (sigm(z) - 1.0) / count);
      }
  free(mr);
  return loss / count;
}

static double dp_ragan_d(void *user, const nn_tensor *real, const nn_tensor *fake,
                         nn_tensor *d_real, nn_tensor *d_fake) {
  esr_dp *dp = user;
  int hw = real->h * real->w, N = real->n, W = real->w, G = dp->gbatch;
  double count = (double)G * hw, l1 = 0, l2 = 0;
  double *buf = calloc((size_t)hw * 4, sizeof(double));
  if (!buf) return NAN;
  double *mr = buf, *mf = buf + hw, *s1 = buf + 2 * hw, *s2 = buf + 3 * hw;
  logit_sums(dp, real, mr);
  logit_sums(dp, fake, mf);
  if (dp_sum_d(dp, buf, 2 * (size_t)hw)) goto fail;
  for (int p = 0; p < 2 * hw; p++) buf[p] /= G;
  nn_zero(d_real);
  nn_zero(d_fake);
  if (dp->n > 0)
    for (int n = 0; n < N; n++)
      for (int p = 0; p < hw; p++) {
        size_t o = nn_off(real, n, 0, p / W, p % W);
        double z1 = real->data[o] - mf[p], z2 = fake->data[o] - mr[p];
        l1 += bce(z1, 1.0);
        l2 += bce(z2, 0.0);
        double g1 = 0.5 * (sigm(z1) - 1.0) / count, g2 = 0.5 * sigm(z2) / count;
        s1[p] += g1, s2[p] += g2;
        d_real->data[o] = (float)g1;
        d_fake->data[o] = (float)g2;
      }
  /* each side also gets minus the global batch mean of the other term's
   * gradient (through mean_b fake and mean_b real) */
  if (dp_sum_d(dp, s1, 2 * (size_t)hw)) goto fail;
  if (dp->n > 0)
    for (int n = 0; n < N; n++)
      for (int p = 0; p < hw; p++) {
        size_t o = nn_off(real, n, 0, p / W, p % W);
        d_real->data[o] = (float)(d_real->data[o] - s2[p] / G);
        d_fake->data[o] = (float)(d_fake->data[o] - s1[p] / G);
      }
  free(buf);
  return 0.5 * (l1 / count + l2 / count);
fail:
  free(buf);
  return NAN;
}

/* ---- context ------------------------------------------------------------- */

int esr_dp_init(esr_dp *dp, int *argc, char ***argv) {
  memset(dp, 0, sizeof *dp);
  dp->size = 1;
#ifndef ESR_NO_MPI
  if (dp_launched()) {
    if (MPI_Init(argc, argv) != MPI_SUCCESS) return PM_ESYS;
    dp->mpi = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &dp->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &dp->size);
  }
#else
  (void)argc, (void)argv;
#endif
  dp->hooks = (nn_dp){.user = dp, .share = 1.0f, .bn_forward = dp_bn_forward,
                      .bn_backward = dp_bn_backward, .ragan_g_loss = dp_ragan_g,
                      .ragan_d_loss = dp_ragan_d};
  return 0;
}

void esr_dp_set_batch(esr_dp *dp, int gbatch) {
  int base = gbatch / dp->size, extra = gbatch % dp->size;
  dp->gbatch = gbatch;
  dp->n = base + (dp->rank < extra);
  dp->lo = dp->rank * base + (dp->rank < extra ? dp->rank : extra);
  dp->hooks.share = (float)dp->n / (float)gbatch;
}

void esr_dp_install(esr_dp *dp, esr_trainer *t) {
  if (dp->size == 1 && !getenv("ESRGAN_DP_HOOKS")) return;
  t->ctx->dp = &dp->hooks;
  t->hook = dp_grad_hook;
  t->hook_user = dp;
}

int esr_dp_bcast_params(esr_dp *dp, esr_trainer *t) {
  if (dp->size == 1) return 0;
#ifndef ESR_NO_MPI
  struct {
    float *p;
    size_t n;
  } b[3] = {{t->G.params, t->G.nparams}, {t->D.params, t->D.nparams},
            {t->D.running, t->D.nrunning}};
  double t0 = dp_now_s();
  for (int i = 0; i < 3; i++)
    for (size_t off = 0; off < b[i].n;) {
      size_t k = b[i].n - off > (1u << 30) ? (1u << 30) : b[i].n - off;
      if (MPI_Bcast(b[i].p + off, (int)k, MPI_FLOAT, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
        nn_seterr("MPI_Bcast of the parameters failed");
        return PM_EIO;
      }
      off += k;
    }
  dp->comm_s += dp_now_s() - t0;
#endif
  return esr_trainer_sync(t);
}

int esr_dp_iter_end(esr_dp *dp, double *vals, int nvals, uint64_t my_stop, uint64_t *agreed) {
  *agreed = my_stop;
  if (dp->size == 1) return 0;
  /* one slot per rank for the stop request (iterations are < 2^53, exact
   * in a double): summing leaves each rank's value in its own slot */
  size_t n = (size_t)nvals + (size_t)dp->size;
  double *buf = calloc(n, sizeof(double));
  if (!buf) {
    nn_seterr("out of memory");
    return PM_ENOMEM;
  }
  memcpy(buf, vals, (size_t)nvals * sizeof(double));
  buf[nvals + dp->rank] = (double)my_stop;
  int rc = dp_sum_d(dp, buf, n);
  if (!rc) {
    memcpy(vals, buf, (size_t)nvals * sizeof(double));
    uint64_t m = 0;
    for (int r = 0; r < dp->size; r++)
      if ((uint64_t)buf[nvals + r] > m) m = (uint64_t)buf[nvals + r];
    *agreed = m;
  }
  free(buf);
  return rc;
}

int esr_dp_bcast_int(esr_dp *dp, int *v) {
  if (dp->size == 1) return 0;
#ifndef ESR_NO_MPI
  if (MPI_Bcast(v, 1, MPI_INT, 0, MPI_COMM_WORLD) != MPI_SUCCESS) return PM_EIO;
#endif
  return 0;
}

int esr_dp_same_everywhere(esr_dp *dp, uint64_t h, int *same) {
  *same = 1;
  if (dp->size == 1) return 0;
#ifndef ESR_NO_MPI
  uint64_t mm[2] = {h, ~h}; /* max of h and of ~h: equal iff min == max */
  if (MPI_Allreduce(MPI_IN_PLACE, mm, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS)
    return PM_EIO;
  *same = mm[0] == h && ~mm[1] == h;
#endif
  return 0;
}

void esr_dp_abort(esr_dp *dp, int code) {
#ifndef ESR_NO_MPI
  if (dp->mpi && dp->size > 1) {
    /* let the launcher forward the message before the abort kills the
     * job (Open MPI drops a dying rank's unforwarded output) */
    fflush(stdout);
    fflush(stderr);
    usleep(300000);
    MPI_Abort(MPI_COMM_WORLD, code);
  }
  if (dp->mpi) MPI_Finalize();
#else
  (void)dp;
#endif
  exit(code);
}

void esr_dp_finalize(esr_dp *dp) {
#ifndef ESR_NO_MPI
  if (dp->mpi) MPI_Finalize();
#endif
  dp->mpi = 0;
}
