/* nn.h - the layers of the ESRGAN trainer, on oneDNN's C API.
 *
 * Every activation is an nn_tensor in oneDNN's blocked nChw16c layout
 * (channels padded to 16 with zeros), allocated once per model.  Layers
 * are forward/backward pairs of free functions; parameters and gradients
 * live in one flat float buffer per network (PyTorch's OIHW order), so the
 * optimiser, checkpoints and a future MPI all-reduce see a single array.
 */
#ifndef ESRGAN_NN_H
#define ESRGAN_NN_H

#include <stddef.h>
#include <stdint.h>

#include <oneapi/dnnl/dnnl.h>

/* Last error detail (static buffer, never NULL); set by every failing call. */
const char *nn_errmsg(void);
void nn_seterr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- context -------------------------------------------------------- */

typedef struct {
  dnnl_engine_t eng;
  dnnl_stream_t strm;
  int winograd;       /* 1: ask for Winograd on stride-1 3x3 convs */
  int bf16;           /* 1: convs compute in bf16 (set before building nets) */
  void *scratch[4];   /* owned: bf16-mode conv inputs/outputs, shared by all */
  size_t scratch_bytes[4];
  int verbose;        /* 1: print every conv's implementation names */
  int allow_ref;      /* 1: accept ref:any kernels without complaint */
  int ref_count;      /* convs that fell back to a ref:any kernel */
  const struct nn_dp *dp; /* borrowed; NULL in a single process (below) */
} nn_ctx;

int nn_ctx_init(nn_ctx *ctx, int winograd, int verbose);
void nn_ctx_free(nn_ctx *ctx);

/* ---- tensors -------------------------------------------------------- */

/* (n, c, h, w) float tensor, nChw16c; data is owned unless `view`. */
typedef struct {
  int n, c, h, w;
  size_t nfloats; /* allocated floats: n * ceil(c/16)*16 * h * w */
  float *data;
  dnnl_memory_desc_t md;
  dnnl_memory_t mem;
  int view;
} nn_tensor;

/* Allocates a zeroed tensor; 0 or PM_ENOMEM / PM_EINVAL. */
int nn_tensor_init(nn_ctx *ctx, nn_tensor *t, int n, int c, int h, int w);
/* A tensor over borrowed data (at least n*ceil16(c)*h*w floats). */
int nn_tensor_view(nn_ctx *ctx, nn_tensor *t, int n, int c, int h, int w,
                   float *data);
void nn_tensor_free(nn_tensor *t);
/* Offset of element (n, c, y, x) in a blocked tensor. */
size_t nn_off(const nn_tensor *t, int n, int c, int y, int x);
/* Copies plain NCHW floats in / out of the blocked tensor. */
void nn_tensor_from_nchw(nn_tensor *t, const float *src);
void nn_tensor_to_nchw(const nn_tensor *t, float *dst);

/* ---- convolution 3x3, pad 1, with bias ------------------------------ */

/* NN_GRAD_STAGED: backward weights leaves the gradient in the conv's own
 * buffer (overwriting the last one) until nn_conv_grads_flush. */
enum { NN_NEED_BWD_DATA = 1, NN_NEED_BWD_W = 2, NN_GRAD_STAGED = 4 };

/* Offsets of OIHW weights in a oneDNN blocked layout: element (o, i, k)
 * with k = kh*3 + kw sits at o_off[o] + i_off[i] + k_off[k] (the layouts
 * the kernels pick place each dimension independently).  o_off is NULL
 * when the layout is not one this handles (oneDNN's reorders run then). */
typedef struct {
  int32_t *o_off, *i_off;
  int32_t k_off[9];
} nn_wmap;

typedef struct {
  int n, ic, oc, h, w, oh, ow, stride, flags;
  float *wp;      /* borrowed: OIHW weights in the parameter buffer */
  float *gw, *gb; /* borrowed: weight and bias grads in the grad buffer */
  dnnl_primitive_t fwd, bwd_data, bwd_w;
  dnnl_primitive_t ro_wfwd, ro_wbwd, ro_gw; /* weight reorders */
  dnnl_memory_t m_w, m_b, m_wfwd, m_wbwd, m_gw, m_gwtmp, m_gbtmp;
  float *wfwd, *wbwd, *gwtmp, *gbtmp; /* owned (NULL when not needed) */
  nn_wmap map_fwd, map_bwd, map_gw; /* for wfwd, wbwd, gwtmp */
  char impl[3][48]; /* fwd, bwd data, bwd weights */
  /* bf16 mode: f32 nChw16c <-> bf16/f32 nhwc reorders around the primitives,
   * through views of the context's scratch (src, dst, diff dst, diff src) */
  int bf16;
  dnnl_primitive_t ro_x, ro_y, ro_dy, ro_dx;
  dnnl_memory_t m_xb, m_yf, m_dyb, m_dxf;
} nn_conv;

int nn_conv_init(nn_ctx *ctx, nn_conv *cv, int n, int ic, int oc, int h, int w,
                 int stride, int flags, float *params, float *grads);
void nn_conv_free(nn_conv *cv);
/* Weights in the conv: OC*IC*9 + OC floats (weights, then bias). */
size_t nn_conv_nparams(int ic, int oc);
/* Re-reads the OIHW weights after they change (optimiser step, load). */
int nn_conv_sync(nn_ctx *ctx, nn_conv *cv);
/* nn_conv_sync for n convs, in one parallel region where the layouts
 * allow (one region per conv and step was most of a loaded step's cost). */
int nn_conv_sync_many(nn_ctx *ctx, nn_conv *cv, int n);
/* Writes the staged gradients of n convs (NN_GRAD_STAGED) into their
 * grad buffers, overwriting them; convs without the flag are skipped. */
int nn_conv_grads_flush(nn_ctx *ctx, nn_conv *cv, int n);
/* x (n, ic, h, w) -> y (n, oc, oh, ow) */
int nn_conv_forward(nn_ctx *ctx, nn_conv *cv, nn_tensor *x, nn_tensor *y);
/* dy -> dx (overwritten) */
int nn_conv_backward_data(nn_ctx *ctx, nn_conv *cv, nn_tensor *dy,
                          nn_tensor *dx);
/* (x, dy) -> gw, gb (accumulated: grads += this pass's gradient), or with
 * NN_GRAD_STAGED into the conv's stage, for nn_conv_grads_flush */
int nn_conv_backward_weights(nn_ctx *ctx, nn_conv *cv, nn_tensor *x,
                             nn_tensor *dy);

/* ---- batch norm, training mode -------------------------------------- */

typedef struct {
  int n, c, h, w;
  float *gamma, *beta;   /* borrowed, params */
  float *ggamma, *gbeta; /* borrowed, grads */
  float *run_mean, *run_var; /* borrowed, running stats */
  float *tmp;            /* owned: 2*c floats for diff scale/shift */
  dnnl_primitive_t fwd, bwd;
  dnnl_memory_t m_gamma, m_beta, m_dg, m_db;
  char impl[48];
  double gcount; /* elements per channel behind the stats when > 0 (set
                  * by a data-parallel hook: the global batch's); else
                  * n * h * w */
} nn_bn;

/* Per call saved statistics (biased batch variance, as oneDNN gives it). */
typedef struct {
  float *mean, *var; /* owned, c floats each */
  dnnl_memory_t m_mean, m_var;
} nn_bn_stats;

int nn_bn_init(nn_ctx *ctx, nn_bn *bn, int n, int c, int h, int w,
               float *params, float *grads, float *running);
void nn_bn_free(nn_bn *bn);
int nn_bn_stats_init(nn_ctx *ctx, nn_bn_stats *st, int c);
void nn_bn_stats_free(nn_bn_stats *st);
/* y = gamma * (x - mean) / sqrt(var + eps) + beta; st receives the stats
 * and the running stats take PyTorch's update (momentum 0.1, unbiased). */
int nn_bn_forward(nn_ctx *ctx, nn_bn *bn, nn_tensor *x, nn_tensor *y,
                  nn_bn_stats *st);
/* Applies the running-stat update of `st` once more (what PyTorch does
 * when it runs D again on the same batch with the same weights). */
void nn_bn_update_running(nn_bn *bn, const nn_bn_stats *st);
/* dx from dy; with `weights`, also gamma/beta grads (accumulated). dx may
 * alias dy. */
int nn_bn_backward(nn_ctx *ctx, nn_bn *bn, nn_tensor *x, nn_bn_stats *st,
                   nn_tensor *dy, nn_tensor *dx, int weights);

/* ---- data-parallel hooks --------------------------------------------- */

/* A data-parallel driver (apps/esrgan/dp.c) points nn_ctx.dp here so that
 * the batch-coupled operations (BatchNorm statistics, RaGAN batch means)
 * run over the global batch of all ranks, not this process's share, and
 * the mean losses are weighted by `share` = local / global samples.  The
 * hooks have the contracts of the functions they replace; every rank
 * calls them in the same order (they contain collectives). */
typedef struct nn_dp {
  void *user;
  float share;
  int (*bn_forward)(void *user, nn_bn *bn, nn_tensor *x, nn_tensor *y,
                    nn_bn_stats *st);
  int (*bn_backward)(void *user, nn_bn *bn, nn_tensor *x, nn_bn_stats *st,
                     nn_tensor *dy, nn_tensor *dx, int weights);
  /* Return this rank's part of the global loss (the parts sum to it). */
  double (*ragan_g_loss)(void *user, const nn_tensor *real,
                         const nn_tensor *fake, nn_tensor *d_fake, float w);
  double (*ragan_d_loss)(void *user, const nn_tensor *real,
                         const nn_tensor *fake, nn_tensor *d_real,
                         nn_tensor *d_fake);
} nn_dp;

/* ---- max pool 2x2 stride 2 ------------------------------------------ */

typedef struct {
  dnnl_primitive_t fwd, bwd;
  dnnl_memory_desc_t ws_md;
  char impl[48];
} nn_pool;

int nn_pool_init(nn_ctx *ctx, nn_pool *p, int n, int c, int h, int w);
void nn_pool_free(nn_pool *p);
/* Workspace memory for one forward's saved argmax. */
int nn_pool_ws_init(nn_ctx *ctx, nn_pool *p, dnnl_memory_t *ws, void **buf);
int nn_pool_forward(nn_ctx *ctx, nn_pool *p, nn_tensor *x, nn_tensor *y,
                    dnnl_memory_t ws);
int nn_pool_backward(nn_ctx *ctx, nn_pool *p, nn_tensor *dy, nn_tensor *dx,
                     dnnl_memory_t ws);

/* ---- element-wise and data movement (OpenMP loops) ------------------ */

/* In place leaky ReLU, y = x > 0 ? x : slope * x. */
void nn_lrelu_forward(nn_tensor *t, float slope);
/* dx = dy * (y > 0 ? 1 : slope), from the forward's output y; in place ok. */
void nn_lrelu_backward(const nn_tensor *y, const nn_tensor *dy, nn_tensor *dx,
                       float slope);
/* y = a * x + b * y over the whole buffers (same shape). */
void nn_axpby(float a, const nn_tensor *x, float b, nn_tensor *y);
/* z = x + a * y */
void nn_add_scaled(const nn_tensor *x, float a, const nn_tensor *y,
                   nn_tensor *z);
/* y = a * x (y's old contents are not read). */
void nn_scale(float a, const nn_tensor *x, nn_tensor *y);
void nn_copy(const nn_tensor *src, nn_tensor *dst);
void nn_zero(nn_tensor *t);
/* dst (n, sum c_i) = [srcs...] along channels; every c_i % 16 == 0. */
void nn_concat(nn_tensor *const *srcs, int nsrc, nn_tensor *dst);
/* nn_concat that first applies the in-place leaky ReLU to the last
 * source, srcs[nsrc-1] (slope >= 0); both then hold the activation. */
void nn_concat_lrelu(nn_tensor *const *srcs, int nsrc, nn_tensor *dst,
                     float slope);
/* dsts[i] (+)= slice i of src: bit i of acc_mask set adds, clear copies. */
void nn_split(const nn_tensor *src, nn_tensor *const *dsts, int ndst,
              unsigned acc_mask);
/* nn_split, except that the last slice's gradient, g = slice (+ dsts[ndst-1]
 * when its bit is set), is taken through the leaky ReLU whose output was y:
 * dz = nn_lrelu_backward(y, g); dsts[ndst-1] is read, never written. */
void nn_split_lrelu(const nn_tensor *src, nn_tensor *const *dsts, int ndst,
                    unsigned acc_mask, const nn_tensor *y, nn_tensor *dz,
                    float slope);
/* PixelShuffle(2): x (n, 4c, h, w) -> y (n, c, 2h, 2w) and its inverse. */
void nn_pixel_shuffle(const nn_tensor *x, nn_tensor *y);
void nn_pixel_unshuffle(const nn_tensor *y, nn_tensor *x);

/* ---- losses ---------------------------------------------------------- */

/* mean |a - b| over the logical elements; if da != NULL, da = w*sign/count
 * (overwritten). */
double nn_l1_loss(const nn_tensor *a, const nn_tensor *b, nn_tensor *da,
                  float w);
/* Generator RaGAN: BCE(fake - mean_b real, 1); d_fake = w * dL/dfake. */
double nn_ragan_g_loss(const nn_tensor *real, const nn_tensor *fake,
                       nn_tensor *d_fake, float w);
/* Discriminator RaGAN, 0.5 * [BCE(real - mean_b fake, 1) +
 * BCE(fake - mean_b real, 0)] with gradients to both. */
double nn_ragan_d_loss(const nn_tensor *real, const nn_tensor *fake,
                       nn_tensor *d_real, nn_tensor *d_fake);

/* ---- optimiser -------------------------------------------------------- */

typedef struct {
  size_t n;
  float *m, *v; /* owned */
  uint64_t step;
  float lr, b1, b2, eps;
} nn_adam;

int nn_adam_init(nn_adam *a, size_t n, float lr, float b1, float b2);
void nn_adam_free(nn_adam *a);
/* PyTorch 1.13 Adam (single-tensor form). */
void nn_adam_step(nn_adam *a, float *params, const float *grads);

#endif
