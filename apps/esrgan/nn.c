/* nn.c - oneDNN-backed layers, element-wise loops, losses and Adam.
 *
 * Convolutions, batch norm and max-pool are oneDNN primitives created once
 * per shape; everything element-wise (leaky ReLU, residual sums, concat,
 * pixel shuffle, losses, Adam) is a plain OpenMP loop over the blocked
 * buffers, whose zero channel padding every operation here preserves.
 */
#include "nn.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paramount.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

static char nn_err_[512];

const char *nn_errmsg(void) { return nn_err_; }

void nn_seterr(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(nn_err_, sizeof nn_err_, fmt, ap);
  va_end(ap);
}

#define DN(call, what)                                                         \
  do {                                                                         \
    dnnl_status_t st_ = (call);                                                \
    if (st_ != dnnl_success) {                                                 \
      nn_seterr("oneDNN: %s failed (status %d)", what, (int)st_);              \
      return PM_ENOTSUP;                                                       \
    }                                                                          \
  } while (0)

static int ceil16(int c) { return (c + 15) / 16 * 16; }

static float *falloc(size_t nfloats) {
  size_t bytes = (nfloats * sizeof(float) + 63) / 64 * 64;
  if (bytes == 0) bytes = 64;
  float *p = aligned_alloc(64, bytes);
  if (p) memset(p, 0, bytes);
  return p;
}

/* ---- context -------------------------------------------------------- */

int nn_ctx_init(nn_ctx *ctx, int winograd, int verbose) {
  memset(ctx, 0, sizeof *ctx);
  ctx->winograd = winograd;
  ctx->verbose = verbose;
  DN(dnnl_engine_create(&ctx->eng, dnnl_cpu, 0), "engine create");
  if (dnnl_stream_create(&ctx->strm, ctx->eng, dnnl_stream_default_flags) !=
      dnnl_success) {
    dnnl_engine_destroy(ctx->eng);
    ctx->eng = NULL;
    nn_seterr("oneDNN: stream create failed");
    return PM_ENOTSUP;
  }
  return 0;
}

/* Grows shared scratch buffer k to at least `bytes`. */
static int ctx_scratch(nn_ctx *ctx, int k, size_t bytes) {
  if (bytes <= ctx->scratch_bytes[k]) return 0;
  size_t sz = (bytes + 63) / 64 * 64;
  void *p = aligned_alloc(64, sz);
  if (!p) {
    nn_seterr("out of memory for %zu bytes of bf16 scratch", sz);
    return PM_ENOMEM;
  }
  free(ctx->scratch[k]);
  ctx->scratch[k] = p;
  ctx->scratch_bytes[k] = sz;
  return 0;
}

void nn_ctx_free(nn_ctx *ctx) {
  for (int k = 0; k < 4; k++) free(ctx->scratch[k]);
  if (ctx->strm) dnnl_stream_destroy(ctx->strm);
  if (ctx->eng) dnnl_engine_destroy(ctx->eng);
  ctx->strm = NULL;
  ctx->eng = NULL;
}

static int md4(dnnl_memory_desc_t *md, int n, int c, int h, int w,
               dnnl_format_tag_t tag) {
  dnnl_dims_t d = {n, c, h, w};
  DN(dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, tag), "memory desc");
  return 0;
}

static int md1(dnnl_memory_desc_t *md, int c) {
  dnnl_dims_t d = {c};
  DN(dnnl_memory_desc_init_by_tag(md, 1, d, dnnl_f32, dnnl_a), "memory desc");
  return 0;
}

static int mem(nn_ctx *ctx, dnnl_memory_t *m, const dnnl_memory_desc_t *md,
               void *ptr) {
  DN(dnnl_memory_create(m, md, ctx->eng, ptr), "memory create");
  return 0;
}

static int exec(nn_ctx *ctx, dnnl_primitive_t p, int nargs,
                const dnnl_exec_arg_t *args, const char *what) {
  DN(dnnl_primitive_execute(p, ctx->strm, nargs, args), what);
  return 0;
}

/* ---- tensors -------------------------------------------------------- */

static int tensor_setup(nn_ctx *ctx, nn_tensor *t, int n, int c, int h, int w,
                        float *data, int view) {
  if (n <= 0 || c <= 0 || h <= 0 || w <= 0) {
    nn_seterr("tensor (%d, %d, %d, %d) has a non-positive dimension", n, c, h,
              w);
    return PM_EINVAL;
  }
  memset(t, 0, sizeof *t);
  t->n = n, t->c = c, t->h = h, t->w = w;
  t->nfloats = (size_t)n * ceil16(c) * h * w;
  int rc = md4(&t->md, n, c, h, w, dnnl_nChw16c);
  if (rc) return rc;
  if (!data) {
    data = falloc(t->nfloats);
    if (!data) {
      nn_seterr("out of memory for a (%d, %d, %d, %d) tensor", n, c, h, w);
      return PM_ENOMEM;
    }
  }
  t->data = data;
  t->view = view;
  rc = mem(ctx, &t->mem, &t->md, data);
  if (rc) {
    if (!view) free(data);
    t->data = NULL;
  }
  return rc;
}

int nn_tensor_init(nn_ctx *ctx, nn_tensor *t, int n, int c, int h, int w) {
  return tensor_setup(ctx, t, n, c, h, w, NULL, 0);
}

int nn_tensor_view(nn_ctx *ctx, nn_tensor *t, int n, int c, int h, int w,
                   float *data) {
  return tensor_setup(ctx, t, n, c, h, w, data, 1);
}

void nn_tensor_free(nn_tensor *t) {
  if (!t) return;
  if (t->mem) dnnl_memory_destroy(t->mem);
  if (!t->view) free(t->data);
  memset(t, 0, sizeof *t);
}

size_t nn_off(const nn_tensor *t, int n, int c, int y, int x) {
  size_t cb = (size_t)ceil16(t->c) / 16;
  return ((((size_t)n * cb + c / 16) * t->h + y) * t->w + x) * 16 + c % 16;
}

void nn_tensor_from_nchw(nn_tensor *t, const float *src) {
  memset(t->data, 0, t->nfloats * sizeof(float));
  for (int n = 0; n < t->n; n++)
    for (int c = 0; c < t->c; c++)
      for (int y = 0; y < t->h; y++)
        for (int x = 0; x < t->w; x++)
          t->data[nn_off(t, n, c, y, x)] =
              src[(((size_t)n * t->c + c) * t->h + y) * t->w + x];
}

void nn_tensor_to_nchw(const nn_tensor *t, float *dst) {
  for (int n = 0; n < t->n; n++)
    for (int c = 0; c < t->c; c++)
      for (int y = 0; y < t->h; y++)
        for (int x = 0; x < t->w; x++)
          dst[(((size_t)n * t->c + c) * t->h + y) * t->w + x] =
              t->data[nn_off(t, n, c, y, x)];
}

/* ---- convolution ---------------------------------------------------- */

size_t nn_conv_nparams(int ic, int oc) { return (size_t)oc * ic * 9 + oc; }

static const char *pd_impl(const_dnnl_primitive_desc_t pd) {
  const char *s = NULL;
  if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s) !=
          dnnl_success ||
      !s)
    return "?";
  return s;
}

static int make_prim(dnnl_primitive_desc_t pd, dnnl_primitive_t *p) {
  DN(dnnl_primitive_create(p, pd), "primitive create");
  return 0;
}

/* A reorder src_md -> dst_md, accumulating into dst when `acc`. */
static int make_reorder(nn_ctx *ctx, const dnnl_memory_desc_t *src,
                        const dnnl_memory_desc_t *dst, int acc,
                        dnnl_primitive_t *p) {
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t po = NULL;
  if (acc) {
    DN(dnnl_primitive_attr_create(&attr), "attr create");
    DN(dnnl_post_ops_create(&po), "post-ops create");
    DN(dnnl_post_ops_append_sum(po, 1.0f), "append sum");
    DN(dnnl_primitive_attr_set_post_ops(attr, po), "set post-ops");
  }
  dnnl_primitive_desc_t pd = NULL;
  dnnl_status_t st =
      dnnl_reorder_primitive_desc_create(&pd, src, ctx->eng, dst, ctx->eng, attr);
  if (po) dnnl_post_ops_destroy(po);
  if (attr) dnnl_primitive_attr_destroy(attr);
  if (st != dnnl_success) {
    nn_seterr("oneDNN: reorder primitive desc failed (status %d)", (int)st);
    return PM_ENOTSUP;
  }
  int rc = make_prim(pd, p);
  dnnl_primitive_desc_destroy(pd);
  return rc;
}

static void note_impl(nn_ctx *ctx, const nn_conv *cv, const char *pass,
                      const char *impl) {
  if (strstr(impl, "ref")) {
    ctx->ref_count++;
    if (!ctx->allow_ref)
      fprintf(stderr,
              "paramount-esrgan: warning: conv %d->%d stride %d at %dx%d %s "
              "uses the slow reference kernel %s\n",
              cv->ic, cv->oc, cv->stride, cv->h, cv->w, pass, impl);
  }
  if (ctx->verbose)
    fprintf(stderr, "conv %4d->%-4d s%d %4dx%-4d %-9s %s\n", cv->ic, cv->oc,
            cv->stride, cv->h, cv->w, pass, impl);
}

/* Creates a pd for one pass.  Stride-1 convs take Winograd when asked,
 * except the data-only ones (VGG) on outputs under 16x16: there its 6x6
 * tiles are mostly padding and the direct kernel measured about twice as
 * fast (VGG's conv5 at 8x8 for hr 128).  Convs with weight gradients keep
 * Winograd: with direct ones in D's small layers, the golden test's D
 * drifted past its tolerance after 4 Adam steps.  A direct kernel that is
 * only oneDNN's reference one (fewer than 16 input channels) gives way to
 * Winograd again. */
static int conv_pd(nn_ctx *ctx, nn_conv *cv, int pass,
                   const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *wt,
                   const dnnl_memory_desc_t *bias,
                   const dnnl_memory_desc_t *dst, const_dnnl_primitive_desc_t hint,
                   dnnl_primitive_desc_t *out) {
  dnnl_dims_t strides = {cv->stride, cv->stride}, pad = {1, 1};
  dnnl_alg_kind_t algs[3] = {dnnl_convolution_winograd, dnnl_convolution_direct,
                             dnnl_convolution_winograd};
  int first = 1, last = 2;
  if (ctx->winograd && cv->stride == 1 && !cv->bf16) {
    if (!(cv->flags & NN_NEED_BWD_W) && (cv->oh < 16 || cv->ow < 16)) last = 3;
    else first = 0;
  }
  dnnl_status_t st = dnnl_unimplemented;
  dnnl_primitive_desc_t refpd = NULL;
  for (int a = first; a < last; a++) {
    dnnl_convolution_desc_t d;
    if (pass == 0)
      st = dnnl_convolution_forward_desc_init(&d, dnnl_forward_training,
                                              algs[a], src, wt, bias, dst,
                                              strides, pad, pad);
    else if (pass == 1)
      st = dnnl_convolution_backward_data_desc_init(&d, algs[a], src, wt, dst,
                                                    strides, pad, pad);
    else
      st = dnnl_convolution_backward_weights_desc_init(
          &d, algs[a], src, wt, bias, dst, strides, pad, pad);
    if (st != dnnl_success) continue;
    dnnl_primitive_desc_t pd = NULL;
    st = dnnl_primitive_desc_create(&pd, &d, NULL, ctx->eng, hint);
    if (st != dnnl_success) continue;
    if (a + 1 < last && !refpd && strstr(pd_impl(pd), "ref")) {
      refpd = pd; /* kept in case the next algorithm has nothing */
      st = dnnl_unimplemented;
      continue;
    }
    *out = pd;
    break;
  }
  if (st != dnnl_success && refpd) {
    *out = refpd;
    refpd = NULL;
    st = dnnl_success;
  }
  if (refpd) dnnl_primitive_desc_destroy(refpd);
  if (st != dnnl_success) {
    nn_seterr("oneDNN: no convolution %d->%d stride %d for pass %d (status %d)",
              cv->ic, cv->oc, cv->stride, pass, (int)st);
    return PM_ENOTSUP;
  }
  return 0;
}

static void wmap_free(nn_wmap *m) {
  free(m->o_off);
  free(m->i_off);
  memset(m, 0, sizeof *m);
}

/* Offset of index x along dim d of a blocked md: its outer block times the
 * dim's stride plus its place in each inner block on that dim. */
static int64_t wmap_dim_off(const dnnl_memory_desc_t *md, int d, int64_t x) {
  const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
  int64_t blk = 1, inner = 0, below = 1;
  for (int k = b->inner_nblks - 1; k >= 0; k--) {
    if (b->inner_idxs[k] == d) {
      inner += (x / blk % b->inner_blks[k]) * below;
      blk *= b->inner_blks[k];
    }
    below *= b->inner_blks[k];
  }
  return x / blk * b->strides[d] + inner;
}

/* Fills m for a (oc, ic, 3, 3) f32 weights md; leaves m empty (and returns
 * 0) for a layout it does not handle, PM_ENOMEM on allocation failure. */
static int wmap_init(nn_wmap *m, const dnnl_memory_desc_t *md, int oc, int ic) {
  memset(m, 0, sizeof *m);
  if (md->format_kind != dnnl_blocked || md->data_type != dnnl_f32 ||
      md->ndims != 4 || md->extra.flags != 0 || md->offset0 != 0 ||
      dnnl_memory_desc_get_size(md) / sizeof(float) > INT32_MAX)
    return 0;
  for (int d = 0; d < 4; d++)
    if (md->padded_offsets[d] != 0) return 0;
  m->o_off = malloc(sizeof *m->o_off * (size_t)oc);
  m->i_off = malloc(sizeof *m->i_off * (size_t)ic);
  if (!m->o_off || !m->i_off) {
    wmap_free(m);
    nn_seterr("out of memory for a weights map");
    return PM_ENOMEM;
  }
  for (int o = 0; o < oc; o++) m->o_off[o] = (int32_t)wmap_dim_off(md, 0, o);
  for (int i = 0; i < ic; i++) m->i_off[i] = (int32_t)wmap_dim_off(md, 1, i);
  for (int k = 0; k < 9; k++)
    m->k_off[k] = (int32_t)(wmap_dim_off(md, 2, k / 3) + wmap_dim_off(md, 3, k % 3));
  return 0;
}

/* OIHW -> blocked (to_blocked) or back, for output channel o. */
static void wmap_row(const nn_wmap *m, int ic, int o, float *plain,
                     float *blocked, int to_blocked) {
  float *p = plain + (size_t)o * ic * 9;
  for (int i = 0; i < ic; i++, p += 9) {
    float *b = blocked + m->o_off[o] + m->i_off[i];
    if (to_blocked)
      for (int k = 0; k < 9; k++) b[m->k_off[k]] = p[k];
    else
      for (int k = 0; k < 9; k++) p[k] = b[m->k_off[k]];
  }
}

int nn_conv_init(nn_ctx *ctx, nn_conv *cv, int n, int ic, int oc, int h, int w,
                 int stride, int flags, float *params, float *grads) {
  memset(cv, 0, sizeof *cv);
  if (stride != 1 && stride != 2) {
    nn_seterr("conv stride %d is not 1 or 2", stride);
    return PM_EINVAL;
  }
  cv->n = n, cv->ic = ic, cv->oc = oc, cv->h = h, cv->w = w;
  cv->stride = stride, cv->flags = flags;
  cv->oh = (h + 2 - 3) / stride + 1;
  cv->ow = (w + 2 - 3) / stride + 1;
  float *wp = params, *bp = params + (size_t)oc * ic * 9;
  float *gwp = grads, *gbp = grads ? grads + (size_t)oc * ic * 9 : NULL;
  cv->wp = wp, cv->gw = gwp, cv->gb = gbp;
  dnnl_memory_desc_t src, dst, wany, wuser, bmd;
  /* what the primitives see: the tensors' layout in fp32; in bf16, bf16
   * nhwc inputs (AMX kernels want nhwc) and f32 nhwc outputs */
  dnnl_memory_desc_t csrc, cdst, cdsrc, cddst, cw, cdstb;
  int rc;
  if ((rc = md4(&src, n, ic, h, w, dnnl_nChw16c)) ||
      (rc = md4(&dst, n, oc, cv->oh, cv->ow, dnnl_nChw16c)) ||
      (rc = md4(&wany, oc, ic, 3, 3, dnnl_format_tag_any)) ||
      (rc = md4(&wuser, oc, ic, 3, 3, dnnl_oihw)) || (rc = md1(&bmd, oc)))
    return rc;
  dnnl_primitive_desc_t pf = NULL, pbd = NULL, pbw = NULL, phint = NULL;
  cv->bf16 = ctx->bf16;
  for (;;) {
    csrc = src, cdst = dst, cdsrc = src, cddst = dst, cw = wany, cdstb = dst;
    if (cv->bf16) {
      dnnl_dims_t sd = {n, ic, h, w}, dd = {n, oc, cv->oh, cv->ow}, wd = {oc, ic, 3, 3};
      if (dnnl_memory_desc_init_by_tag(&csrc, 4, sd, dnnl_bf16, dnnl_nhwc) ||
          dnnl_memory_desc_init_by_tag(&cdsrc, 4, sd, dnnl_f32, dnnl_nhwc) ||
          dnnl_memory_desc_init_by_tag(&cdst, 4, dd, dnnl_f32, dnnl_nhwc) ||
          dnnl_memory_desc_init_by_tag(&cddst, 4, dd, dnnl_bf16, dnnl_nhwc) ||
          dnnl_memory_desc_init_by_tag(&cdstb, 4, dd, dnnl_bf16, dnnl_nhwc) ||
          dnnl_memory_desc_init_by_tag(&cw, 4, wd, dnnl_bf16, dnnl_format_tag_any)) {
        nn_seterr("oneDNN: bf16 memory descriptors failed");
        return PM_ENOTSUP;
      }
    }
    rc = conv_pd(ctx, cv, 0, &csrc, &cw, &bmd, &cdst, NULL, &pf);
    /* the backward passes take a forward hint whose dst type is theirs */
    if (!rc && cv->bf16 && (flags & (NN_NEED_BWD_DATA | NN_NEED_BWD_W)))
      rc = conv_pd(ctx, cv, 0, &csrc, &cw, &bmd, &cdstb, NULL, &phint);
    const_dnnl_primitive_desc_t hint = phint ? phint : pf;
    if (!rc && (flags & NN_NEED_BWD_DATA))
      rc = conv_pd(ctx, cv, 1, &cdsrc, &cw, NULL, &cddst, hint, &pbd);
    if (!rc && (flags & NN_NEED_BWD_W))
      rc = conv_pd(ctx, cv, 2, &csrc, &wany, &bmd, &cddst, hint, &pbw);
    /* bf16 where oneDNN has a real kernel for all passes, else fp32 */
    int slow = cv->bf16 && !rc &&
               (strstr(pd_impl(pf), "ref") || (pbd && strstr(pd_impl(pbd), "ref")) ||
                (pbw && strstr(pd_impl(pbw), "ref")));
    if (!rc && !slow) break;
    dnnl_primitive_desc_t ps[] = {pf, pbd, pbw, phint};
    for (int i = 0; i < 4; i++)
      if (ps[i]) dnnl_primitive_desc_destroy(ps[i]);
    pf = pbd = pbw = phint = NULL;
    if (!cv->bf16) goto fail;
    cv->bf16 = 0;
  }
  if (phint) dnnl_primitive_desc_destroy(phint);
  snprintf(cv->impl[0], sizeof cv->impl[0], "%s", pd_impl(pf));
  note_impl(ctx, cv, "fwd", cv->impl[0]);
  if ((rc = make_prim(pf, &cv->fwd))) goto fail;
  if ((rc = mem(ctx, &cv->m_w, &wuser, wp)) || (rc = mem(ctx, &cv->m_b, &bmd, bp)))
    goto fail;
  const dnnl_memory_desc_t *wf = dnnl_primitive_desc_query_md(pf, dnnl_query_weights_md, 0);
  if (!dnnl_memory_desc_equal(wf, &wuser)) {
    cv->wfwd = falloc(dnnl_memory_desc_get_size(wf) / sizeof(float) + 16);
    if (!cv->wfwd) { rc = PM_ENOMEM; nn_seterr("out of memory for conv weights"); goto fail; }
    if ((rc = mem(ctx, &cv->m_wfwd, wf, cv->wfwd)) ||
        (rc = make_reorder(ctx, &wuser, wf, 0, &cv->ro_wfwd)) ||
        (rc = wmap_init(&cv->map_fwd, wf, oc, ic)))
      goto fail;
  }
  if (flags & NN_NEED_BWD_DATA) {
    snprintf(cv->impl[1], sizeof cv->impl[1], "%s", pd_impl(pbd));
    note_impl(ctx, cv, "bwd_data", cv->impl[1]);
    if ((rc = make_prim(pbd, &cv->bwd_data))) goto fail;
    const dnnl_memory_desc_t *wb =
        dnnl_primitive_desc_query_md(pbd, dnnl_query_weights_md, 0);
    if (!dnnl_memory_desc_equal(wb, wf)) {
      cv->wbwd = falloc(dnnl_memory_desc_get_size(wb) / sizeof(float) + 16);
      if (!cv->wbwd) { rc = PM_ENOMEM; nn_seterr("out of memory for conv weights"); goto fail; }
      if ((rc = mem(ctx, &cv->m_wbwd, wb, cv->wbwd)) ||
          (rc = make_reorder(ctx, &wuser, wb, 0, &cv->ro_wbwd)) ||
          (rc = wmap_init(&cv->map_bwd, wb, oc, ic)))
        goto fail;
    }
  }
  if (flags & NN_NEED_BWD_W) {
    if (!grads) { rc = PM_EINVAL; nn_seterr("conv needs weight grads but has no grad buffer"); goto fail; }
    snprintf(cv->impl[2], sizeof cv->impl[2], "%s", pd_impl(pbw));
    note_impl(ctx, cv, "bwd_w", cv->impl[2]);
    if ((rc = make_prim(pbw, &cv->bwd_w))) goto fail;
    const dnnl_memory_desc_t *gw =
        dnnl_primitive_desc_query_md(pbw, dnnl_query_diff_weights_md, 0);
    const dnnl_memory_desc_t *gb =
        dnnl_primitive_desc_query_md(pbw, dnnl_query_diff_weights_md, 1);
    if (!dnnl_memory_desc_equal(gb, &bmd)) {
      rc = PM_ENOTSUP;
      nn_seterr("oneDNN: conv diff bias is not a plain vector");
      goto fail;
    }
    cv->gwtmp = falloc(dnnl_memory_desc_get_size(gw) / sizeof(float) + 16);
    cv->gbtmp = falloc((size_t)oc);
    if (!cv->gwtmp || !cv->gbtmp) { rc = PM_ENOMEM; nn_seterr("out of memory for conv grads"); goto fail; }
    if ((rc = mem(ctx, &cv->m_gwtmp, gw, cv->gwtmp)) ||
        (rc = mem(ctx, &cv->m_gbtmp, &bmd, cv->gbtmp)) ||
        (rc = mem(ctx, &cv->m_gw, &wuser, gwp)) ||
        (rc = make_reorder(ctx, gw, &wuser, 1, &cv->ro_gw)) ||
        (rc = wmap_init(&cv->map_gw, gw, oc, ic)))
      goto fail;
  }
  if (cv->bf16) {
    /* activation reorders into and out of the shared bf16 scratch */
    dnnl_memory_desc_t ymd = dst;
    if ((rc = make_reorder(ctx, &src, &csrc, 0, &cv->ro_x)) ||
        (rc = make_reorder(ctx, &cdst, &ymd, 0, &cv->ro_y)) ||
        (rc = make_reorder(ctx, &dst, &cddst, 0, &cv->ro_dy)) ||
        (rc = make_reorder(ctx, &cdsrc, &src, 0, &cv->ro_dx)) ||
        (rc = mem(ctx, &cv->m_xb, &csrc, DNNL_MEMORY_NONE)) ||
        (rc = mem(ctx, &cv->m_yf, &cdst, DNNL_MEMORY_NONE)) ||
        (rc = mem(ctx, &cv->m_dyb, &cddst, DNNL_MEMORY_NONE)) ||
        (rc = mem(ctx, &cv->m_dxf, &cdsrc, DNNL_MEMORY_NONE)) ||
        (rc = ctx_scratch(ctx, 0, dnnl_memory_desc_get_size(&csrc))) ||
        (rc = ctx_scratch(ctx, 1, dnnl_memory_desc_get_size(&cdst))) ||
        (rc = ctx_scratch(ctx, 2, dnnl_memory_desc_get_size(&cddst))) ||
        (rc = ctx_scratch(ctx, 3, dnnl_memory_desc_get_size(&cdsrc))))
      goto fail;
  }
  dnnl_primitive_desc_destroy(pf);
  if (pbd) dnnl_primitive_desc_destroy(pbd);
  if (pbw) dnnl_primitive_desc_destroy(pbw);
  return nn_conv_sync(ctx, cv);
fail:
  if (pf) dnnl_primitive_desc_destroy(pf);
  if (pbd) dnnl_primitive_desc_destroy(pbd);
  if (pbw) dnnl_primitive_desc_destroy(pbw);
  nn_conv_free(cv);
  return rc;
}

void nn_conv_free(nn_conv *cv) {
  if (!cv) return;
  dnnl_primitive_t ps[] = {cv->fwd,   cv->bwd_data, cv->bwd_w, cv->ro_wfwd, cv->ro_wbwd,
                           cv->ro_gw, cv->ro_x,     cv->ro_y,  cv->ro_dy,   cv->ro_dx};
  for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
    if (ps[i]) dnnl_primitive_destroy(ps[i]);
  dnnl_memory_t ms[] = {cv->m_w,     cv->m_b,     cv->m_wfwd, cv->m_wbwd, cv->m_gw,
                        cv->m_gwtmp, cv->m_gbtmp, cv->m_xb,   cv->m_yf,   cv->m_dyb,
                        cv->m_dxf};
  for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
    if (ms[i]) dnnl_memory_destroy(ms[i]);
  free(cv->wfwd);
  free(cv->wbwd);
  free(cv->gwtmp);
  free(cv->gbtmp);
  wmap_free(&cv->map_fwd);
  wmap_free(&cv->map_bwd);
  wmap_free(&cv->map_gw);
  memset(cv, 0, sizeof *cv);
}

int nn_conv_sync(nn_ctx *ctx, nn_conv *cv) {
  if (cv->ro_wfwd) {
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, cv->m_w}, {DNNL_ARG_TO, cv->m_wfwd}};
    int rc = exec(ctx, cv->ro_wfwd, 2, a, "weights reorder");
    if (rc) return rc;
  }
  if (cv->ro_wbwd) {
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, cv->m_w}, {DNNL_ARG_TO, cv->m_wbwd}};
    int rc = exec(ctx, cv->ro_wbwd, 2, a, "weights reorder");
    if (rc) return rc;
  }
  return 0;
}

/* Work items of the one-region conversions: (conv, output channel). */
static long conv_rows(const nn_conv *cv, int n, long *first) {
  long rows = 0;
  for (int c = 0; c < n; c++) first[c] = rows, rows += cv[c].oc;
  first[n] = rows;
  return rows;
}

static int conv_of_row(const long *first, int n, long r) {
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (first[mid] <= r) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

int nn_conv_sync_many(nn_ctx *ctx, nn_conv *cv, int n) {
  long *first = malloc(sizeof *first * ((size_t)n + 1));
  if (!first) {
    nn_seterr("out of memory for %d convs' weight sync", n);
    return PM_ENOMEM;
  }
  long rows = conv_rows(cv, n, first);
#pragma omp parallel for schedule(static)
  for (long r = 0; r < rows; r++) {
    int c = conv_of_row(first, n, r), o = (int)(r - first[c]);
    nn_conv *k = &cv[c];
    float *w = k->wp;
    if (k->ro_wfwd && k->map_fwd.o_off) wmap_row(&k->map_fwd, k->ic, o, w, k->wfwd, 1);
    if (k->ro_wbwd && k->map_bwd.o_off) wmap_row(&k->map_bwd, k->ic, o, w, k->wbwd, 1);
  }
  free(first);
  for (int c = 0; c < n; c++) {
    nn_conv *k = &cv[c];
    if ((k->ro_wfwd && !k->map_fwd.o_off) || (k->ro_wbwd && !k->map_bwd.o_off)) {
      int rc = nn_conv_sync(ctx, k);
      if (rc) return rc;
    }
  }
  return 0;
}

int nn_conv_grads_flush(nn_ctx *ctx, nn_conv *cv, int n) {
  long *first = malloc(sizeof *first * ((size_t)n + 1));
  if (!first) {
    nn_seterr("out of memory for %d convs' gradient flush", n);
    return PM_ENOMEM;
  }
  long rows = conv_rows(cv, n, first);
#pragma omp parallel for schedule(static)
  for (long r = 0; r < rows; r++) {
    int c = conv_of_row(first, n, r), o = (int)(r - first[c]);
    nn_conv *k = &cv[c];
    if (!(k->flags & NN_GRAD_STAGED) || !k->bwd_w) continue;
    k->gb[o] = k->gbtmp[o];
    if (k->map_gw.o_off) wmap_row(&k->map_gw, k->ic, o, k->gw, k->gwtmp, 0);
  }
  free(first);
  for (int c = 0; c < n; c++) {
    nn_conv *k = &cv[c];
    if (!(k->flags & NN_GRAD_STAGED) || !k->bwd_w || k->map_gw.o_off) continue;
    /* the reorder accumulates: from zero, that is an overwrite */
    memset(k->gw, 0, sizeof(float) * (size_t)k->oc * k->ic * 9);
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, k->m_gwtmp}, {DNNL_ARG_TO, k->m_gw}};
    int rc = exec(ctx, k->ro_gw, 2, a, "diff weights reorder");
    if (rc) return rc;
  }
  return 0;
}

static dnnl_memory_t conv_wfwd(nn_conv *cv) {
  return cv->m_wfwd ? cv->m_wfwd : cv->m_w;
}

/* bf16 mode: runs reorder p from -> to (one side a scratch view). */
static int conv_move(nn_ctx *ctx, dnnl_primitive_t p, dnnl_memory_t from,
                     dnnl_memory_t to, const char *what) {
  dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
  return exec(ctx, p, 2, a, what);
}

/* Points the conv's scratch views at the context's current buffers (they
 * may have grown since the conv was built). */
static int conv_bind(nn_conv *cv, nn_ctx *ctx) {
  dnnl_memory_t ms[4] = {cv->m_xb, cv->m_yf, cv->m_dyb, cv->m_dxf};
  for (int i = 0; i < 4; i++)
    DN(dnnl_memory_set_data_handle(ms[i], ctx->scratch[i]), "scratch bind");
  return 0;
}

int nn_conv_forward(nn_ctx *ctx, nn_conv *cv, nn_tensor *x, nn_tensor *y) {
  int rc;
  if (cv->bf16 && ((rc = conv_bind(cv, ctx)) ||
                   (rc = conv_move(ctx, cv->ro_x, x->mem, cv->m_xb, "bf16 src reorder"))))
    return rc;
  dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, cv->bf16 ? cv->m_xb : x->mem},
                          {DNNL_ARG_WEIGHTS, conv_wfwd(cv)},
                          {DNNL_ARG_BIAS, cv->m_b},
                          {DNNL_ARG_DST, cv->bf16 ? cv->m_yf : y->mem}};
  if ((rc = exec(ctx, cv->fwd, 4, a, "conv forward")) || !cv->bf16) return rc;
  return conv_move(ctx, cv->ro_y, cv->m_yf, y->mem, "bf16 dst reorder");
}

int nn_conv_backward_data(nn_ctx *ctx, nn_conv *cv, nn_tensor *dy,
                          nn_tensor *dx) {
  if (!cv->bwd_data) {
    nn_seterr("conv %d->%d was built without backward data", cv->ic, cv->oc);
    return PM_ESTATE;
  }
  int rc;
  if (cv->bf16 && ((rc = conv_bind(cv, ctx)) ||
                   (rc = conv_move(ctx, cv->ro_dy, dy->mem, cv->m_dyb, "bf16 diff reorder"))))
    return rc;
  dnnl_exec_arg_t a[3] = {{DNNL_ARG_DIFF_DST, cv->bf16 ? cv->m_dyb : dy->mem},
                          {DNNL_ARG_WEIGHTS, cv->m_wbwd ? cv->m_wbwd : conv_wfwd(cv)},
                          {DNNL_ARG_DIFF_SRC, cv->bf16 ? cv->m_dxf : dx->mem}};
  if ((rc = exec(ctx, cv->bwd_data, 3, a, "conv backward data")) || !cv->bf16) return rc;
  return conv_move(ctx, cv->ro_dx, cv->m_dxf, dx->mem, "bf16 diff src reorder");
}

int nn_conv_backward_weights(nn_ctx *ctx, nn_conv *cv, nn_tensor *x,
                             nn_tensor *dy) {
  if (!cv->bwd_w) {
    nn_seterr("conv %d->%d was built without backward weights", cv->ic, cv->oc);
    return PM_ESTATE;
  }
  int rc;
  if (cv->bf16 && ((rc = conv_bind(cv, ctx)) ||
                   (rc = conv_move(ctx, cv->ro_x, x->mem, cv->m_xb, "bf16 src reorder")) ||
                   (rc = conv_move(ctx, cv->ro_dy, dy->mem, cv->m_dyb, "bf16 diff reorder"))))
    return rc;
  dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, cv->bf16 ? cv->m_xb : x->mem},
                          {DNNL_ARG_DIFF_DST, cv->bf16 ? cv->m_dyb : dy->mem},
                          {DNNL_ARG_DIFF_WEIGHTS, cv->m_gwtmp},
                          {DNNL_ARG_DIFF_BIAS, cv->m_gbtmp}};
  rc = exec(ctx, cv->bwd_w, 4, a, "conv backward weights");
  if (rc || (cv->flags & NN_GRAD_STAGED)) return rc;
  dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, cv->m_gwtmp}, {DNNL_ARG_TO, cv->m_gw}};
  rc = exec(ctx, cv->ro_gw, 2, r, "diff weights reorder");
  if (rc) return rc;
  for (int i = 0; i < cv->oc; i++) cv->gb[i] += cv->gbtmp[i];
  return 0;
}

/* ---- batch norm ----------------------------------------------------- */

#define BN_EPS 1e-5f
#define BN_MOMENTUM 0.1f

int nn_bn_init(nn_ctx *ctx, nn_bn *bn, int n, int c, int h, int w,
               float *params, float *grads, float *running) {
  memset(bn, 0, sizeof *bn);
  bn->n = n, bn->c = c, bn->h = h, bn->w = w;
  bn->gamma = params, bn->beta = params + c;
  bn->ggamma = grads, bn->gbeta = grads + c;
  bn->run_mean = running, bn->run_var = running + c;
  bn->tmp = falloc(2 * (size_t)c);
  if (!bn->tmp) { nn_seterr("out of memory for batch norm"); return PM_ENOMEM; }
  dnnl_memory_desc_t data, cmd;
  int rc;
  if ((rc = md4(&data, n, c, h, w, dnnl_nChw16c)) || (rc = md1(&cmd, c)))
    goto fail;
  unsigned flags = dnnl_use_scale | dnnl_use_shift;
  dnnl_batch_normalization_desc_t d;
  dnnl_primitive_desc_t pf = NULL, pb = NULL;
  rc = PM_ENOTSUP;
  if (dnnl_batch_normalization_forward_desc_init(&d, dnnl_forward_training, &data,
                                                 BN_EPS, flags) != dnnl_success ||
      dnnl_primitive_desc_create(&pf, &d, NULL, ctx->eng, NULL) != dnnl_success) {
    nn_seterr("oneDNN: batch norm forward unavailable for c=%d", c);
    goto fail;
  }
  snprintf(bn->impl, sizeof bn->impl, "%s", pd_impl(pf));
  if (dnnl_batch_normalization_backward_desc_init(&d, dnnl_backward, &data, &data,
                                                  BN_EPS, flags) != dnnl_success ||
      dnnl_primitive_desc_create(&pb, &d, NULL, ctx->eng, pf) != dnnl_success) {
    nn_seterr("oneDNN: batch norm backward unavailable for c=%d", c);
    goto fail_pd;
  }
  /* oneDNN 2.6 has no backward_data batch norm with scale: the data-only
   * pass runs the full backward and drops the scale/shift gradients. */
  if ((rc = make_prim(pf, &bn->fwd)) || (rc = make_prim(pb, &bn->bwd)) ||
      (rc = mem(ctx, &bn->m_gamma, &cmd, bn->gamma)) ||
      (rc = mem(ctx, &bn->m_beta, &cmd, bn->beta)) ||
      (rc = mem(ctx, &bn->m_dg, &cmd, bn->tmp)) ||
      (rc = mem(ctx, &bn->m_db, &cmd, bn->tmp + c)))
    goto fail_pd;
  dnnl_primitive_desc_destroy(pf);
  dnnl_primitive_desc_destroy(pb);
  return 0;
fail_pd:
  if (pf) dnnl_primitive_desc_destroy(pf);
  if (pb) dnnl_primitive_desc_destroy(pb);
fail:
  nn_bn_free(bn);
  return rc;
}

void nn_bn_free(nn_bn *bn) {
  if (!bn) return;
  if (bn->fwd) dnnl_primitive_destroy(bn->fwd);
  if (bn->bwd) dnnl_primitive_destroy(bn->bwd);
  dnnl_memory_t ms[] = {bn->m_gamma, bn->m_beta, bn->m_dg, bn->m_db};
  for (int i = 0; i < 4; i++)
    if (ms[i]) dnnl_memory_destroy(ms[i]);
  free(bn->tmp);
  memset(bn, 0, sizeof *bn);
}

int nn_bn_stats_init(nn_ctx *ctx, nn_bn_stats *st, int c) {
  memset(st, 0, sizeof *st);
  dnnl_memory_desc_t cmd;
  int rc = md1(&cmd, c);
  if (rc) return rc;
  st->mean = falloc((size_t)c);
  st->var = falloc((size_t)c);
  if (!st->mean || !st->var) {
    nn_bn_stats_free(st);
    nn_seterr("out of memory for batch norm statistics");
    return PM_ENOMEM;
  }
  if ((rc = mem(ctx, &st->m_mean, &cmd, st->mean)) ||
      (rc = mem(ctx, &st->m_var, &cmd, st->var)))
    nn_bn_stats_free(st);
  return rc;
}

void nn_bn_stats_free(nn_bn_stats *st) {
  if (!st) return;
  if (st->m_mean) dnnl_memory_destroy(st->m_mean);
  if (st->m_var) dnnl_memory_destroy(st->m_var);
  free(st->mean);
  free(st->var);
  memset(st, 0, sizeof *st);
}

void nn_bn_update_running(nn_bn *bn, const nn_bn_stats *st) {
  double cnt = bn->gcount > 0 ? bn->gcount : (double)bn->n * bn->h * bn->w;
  float unbias = cnt > 1 ? (float)(cnt / (cnt - 1)) : 1.0f;
  for (int i = 0; i < bn->c; i++) {
    bn->run_mean[i] = BN_MOMENTUM * st->mean[i] + (1 - BN_MOMENTUM) * bn->run_mean[i];
    bn->run_var[i] =
        BN_MOMENTUM * (st->var[i] * unbias) + (1 - BN_MOMENTUM) * bn->run_var[i];
  }
}

int nn_bn_forward(nn_ctx *ctx, nn_bn *bn, nn_tensor *x, nn_tensor *y,
                  nn_bn_stats *st) {
  if (ctx->dp && ctx->dp->bn_forward) return ctx->dp->bn_forward(ctx->dp->user, bn, x, y, st);
  dnnl_exec_arg_t a[6] = {{DNNL_ARG_SRC, x->mem},        {DNNL_ARG_DST, y->mem},
                          {DNNL_ARG_SCALE, bn->m_gamma}, {DNNL_ARG_SHIFT, bn->m_beta},
                          {DNNL_ARG_MEAN, st->m_mean},   {DNNL_ARG_VARIANCE, st->m_var}};
  int rc = exec(ctx, bn->fwd, 6, a, "batch norm forward");
  if (rc) return rc;
  nn_bn_update_running(bn, st);
  return 0;
}

int nn_bn_backward(nn_ctx *ctx, nn_bn *bn, nn_tensor *x, nn_bn_stats *st,
                   nn_tensor *dy, nn_tensor *dx, int weights) {
  if (ctx->dp && ctx->dp->bn_backward)
    return ctx->dp->bn_backward(ctx->dp->user, bn, x, st, dy, dx, weights);
  /* oneDNN 2.6 insists on SHIFT here although the gradient ignores it */
  dnnl_exec_arg_t a[9] = {{DNNL_ARG_SHIFT, bn->m_beta},
                          {DNNL_ARG_SRC, x->mem},        {DNNL_ARG_MEAN, st->m_mean},
                          {DNNL_ARG_VARIANCE, st->m_var}, {DNNL_ARG_DIFF_DST, dy->mem},
                          {DNNL_ARG_SCALE, bn->m_gamma},  {DNNL_ARG_DIFF_SRC, dx->mem},
                          {DNNL_ARG_DIFF_SCALE, bn->m_dg}, {DNNL_ARG_DIFF_SHIFT, bn->m_db}};
  int rc = exec(ctx, bn->bwd, 9, a, "batch norm backward");
  if (rc || !weights) return rc;
  for (int i = 0; i < bn->c; i++) {
    bn->ggamma[i] += bn->tmp[i];
    bn->gbeta[i] += bn->tmp[bn->c + i];
  }
  return 0;
}

/* ---- max pool -------------------------------------------------------- */

int nn_pool_init(nn_ctx *ctx, nn_pool *p, int n, int c, int h, int w) {
  memset(p, 0, sizeof *p);
  dnnl_memory_desc_t src, dst;
  int rc;
  if ((rc = md4(&src, n, c, h, w, dnnl_nChw16c)) ||
      (rc = md4(&dst, n, c, h / 2, w / 2, dnnl_nChw16c)))
    return rc;
  dnnl_dims_t k = {2, 2}, s = {2, 2}, pad = {0, 0};
  dnnl_pooling_desc_t d;
  dnnl_primitive_desc_t pf = NULL, pb = NULL;
  rc = PM_ENOTSUP;
  if (dnnl_pooling_forward_desc_init(&d, dnnl_forward_training, dnnl_pooling_max,
                                     &src, &dst, s, k, pad, pad) != dnnl_success ||
      dnnl_primitive_desc_create(&pf, &d, NULL, ctx->eng, NULL) != dnnl_success ||
      dnnl_pooling_backward_desc_init(&d, dnnl_pooling_max, &src, &dst, s, k, pad,
                                      pad) != dnnl_success ||
      dnnl_primitive_desc_create(&pb, &d, NULL, ctx->eng, pf) != dnnl_success) {
    nn_seterr("oneDNN: max pool unavailable for c=%d %dx%d", c, h, w);
    goto out;
  }
  snprintf(p->impl, sizeof p->impl, "%s", pd_impl(pf));
  p->ws_md = *dnnl_primitive_desc_query_md(pf, dnnl_query_workspace_md, 0);
  if ((rc = make_prim(pf, &p->fwd)) || (rc = make_prim(pb, &p->bwd))) goto out;
  rc = 0;
out:
  if (pf) dnnl_primitive_desc_destroy(pf);
  if (pb) dnnl_primitive_desc_destroy(pb);
  if (rc) nn_pool_free(p);
  return rc;
}

void nn_pool_free(nn_pool *p) {
  if (!p) return;
  if (p->fwd) dnnl_primitive_destroy(p->fwd);
  if (p->bwd) dnnl_primitive_destroy(p->bwd);
  memset(p, 0, sizeof *p);
}

int nn_pool_ws_init(nn_ctx *ctx, nn_pool *p, dnnl_memory_t *ws, void **buf) {
  size_t sz = dnnl_memory_desc_get_size(&p->ws_md);
  *buf = aligned_alloc(64, (sz + 63) / 64 * 64 + 64);
  if (!*buf) { nn_seterr("out of memory for pool workspace"); return PM_ENOMEM; }
  int rc = mem(ctx, ws, &p->ws_md, *buf);
  if (rc) { free(*buf); *buf = NULL; }
  return rc;
}

int nn_pool_forward(nn_ctx *ctx, nn_pool *p, nn_tensor *x, nn_tensor *y,
                    dnnl_memory_t ws) {
  dnnl_exec_arg_t a[3] = {{DNNL_ARG_SRC, x->mem}, {DNNL_ARG_DST, y->mem},
                          {DNNL_ARG_WORKSPACE, ws}};
  return exec(ctx, p->fwd, 3, a, "pool forward");
}

int nn_pool_backward(nn_ctx *ctx, nn_pool *p, nn_tensor *dy, nn_tensor *dx,
                     dnnl_memory_t ws) {
  dnnl_exec_arg_t a[3] = {{DNNL_ARG_DIFF_DST, dy->mem}, {DNNL_ARG_DIFF_SRC, dx->mem},
                          {DNNL_ARG_WORKSPACE, ws}};
  return exec(ctx, p->bwd, 3, a, "pool backward");
}

/* ---- element-wise ------------------------------------------------------ */

/* The leaky ReLU's gain, 1 for x > 0 and `slope` otherwise, picked with a
 * bit mask: GCC at -O2 does not if-convert `x > 0 ? x : slope * x`, and
 * the scalar loop it leaves mispredicts on every other sign change (it
 * was a sixth of the GAN step).  x * 1 == x, so the results are the
 * ternary's bit for bit. */
static inline float lrelu_gain(float x, uint32_t slope_bits) {
  uint32_t m = -(uint32_t)(x > 0), g = (m & 0x3f800000u) | (~m & slope_bits);
  float f;
  memcpy(&f, &g, sizeof f);
  return f;
}

static uint32_t float_bits(float f) {
  uint32_t b;
  memcpy(&b, &f, sizeof b);
  return b;
}

void nn_lrelu_forward(nn_tensor *t, float slope) {
  float *p = t->data;
  long n = (long)t->nfloats;
  uint32_t sb = float_bits(slope);
#pragma omp parallel for simd schedule(static)
  for (long i = 0; i < n; i++) p[i] = p[i] * lrelu_gain(p[i], sb);
}

void nn_lrelu_backward(const nn_tensor *y, const nn_tensor *dy, nn_tensor *dx,
                       float slope) {
  const float *yp = y->data, *g = dy->data;
  float *o = dx->data;
  long n = (long)y->nfloats;
  uint32_t sb = float_bits(slope);
#pragma omp parallel for simd schedule(static)
  for (long i = 0; i < n; i++) o[i] = g[i] * lrelu_gain(yp[i], sb);
}

void nn_axpby(float a, const nn_tensor *x, float b, nn_tensor *y) {
  const float *xp = x->data;
  float *yp = y->data;
  long n = (long)x->nfloats;
#pragma omp parallel for simd schedule(static)
  for (long i = 0; i < n; i++) yp[i] = a * xp[i] + b * yp[i];
}

void nn_add_scaled(const nn_tensor *x, float a, const nn_tensor *y,
                   nn_tensor *z) {
  const float *xp = x->data, *yp = y->data;
  float *zp = z->data;
  long n = (long)x->nfloats;
#pragma omp parallel for simd schedule(static)
  for (long i = 0; i < n; i++) zp[i] = xp[i] + a * yp[i];
}

void nn_scale(float a, const nn_tensor *x, nn_tensor *y) {
  const float *xp = x->data;
  float *yp = y->data;
  long n = (long)x->nfloats;
#pragma omp parallel for simd schedule(static)
  for (long i = 0; i < n; i++) yp[i] = a * xp[i];
}

void nn_copy(const nn_tensor *src, nn_tensor *dst) {
  memcpy(dst->data, src->data, src->nfloats * sizeof(float));
}

void nn_zero(nn_tensor *t) { memset(t->data, 0, t->nfloats * sizeof(float)); }

/* In nChw16c with whole channel blocks, a channel slice of one image is a
 * contiguous run of c*h*w floats.  With `slope` >= 0 the last source is
 * passed through the leaky ReLU on the way, in place and into dst: the
 * dense block's activation rides on the copy it needs anyway, one
 * parallel region and one pass over y fewer (regions are what a loaded
 * 2-core machine makes expensive). */
static void concat_impl(nn_tensor *const *srcs, int nsrc, nn_tensor *dst,
                        float slope) {
  size_t hw = (size_t)dst->h * dst->w;
  long total = (long)dst->n * nsrc;
  uint32_t sb = float_bits(slope);
#pragma omp parallel for schedule(static)
  for (long k = 0; k < total; k++) {
    int n = (int)(k / nsrc), i = (int)(k % nsrc);
    size_t coff = 0;
    for (int j = 0; j < i; j++) coff += (size_t)srcs[j]->c;
    nn_tensor *s = srcs[i];
    float *dp = dst->data + ((size_t)n * dst->c + coff) * hw;
    float *sp = s->data + (size_t)n * s->c * hw;
    size_t m = (size_t)s->c * hw;
    if (slope >= 0 && i == nsrc - 1) {
#pragma omp simd
      for (size_t j = 0; j < m; j++) dp[j] = sp[j] = sp[j] * lrelu_gain(sp[j], sb);
    } else {
      memcpy(dp, sp, m * sizeof(float));
    }
  }
}

void nn_concat(nn_tensor *const *srcs, int nsrc, nn_tensor *dst) {
  concat_impl(srcs, nsrc, dst, -1.0f);
}

void nn_concat_lrelu(nn_tensor *const *srcs, int nsrc, nn_tensor *dst,
                     float slope) {
  concat_impl(srcs, nsrc, dst, slope);
}

/* One parallel region over (image, slice) pairs: a region per slice cost
 * more than the copies themselves on a busy 2-core machine.  With `y`,
 * the last slice (plus dsts[ndst-1] when its bit is set) goes through the
 * leaky ReLU's backward into dz instead of into dsts[ndst-1]. */
static void split_impl(const nn_tensor *src, nn_tensor *const *dsts, int ndst,
                       unsigned acc_mask, const nn_tensor *y, nn_tensor *dz,
                       float slope) {
  size_t hw = (size_t)src->h * src->w;
  long total = (long)src->n * ndst;
  uint32_t sb = float_bits(slope);
#pragma omp parallel for schedule(static)
  for (long k = 0; k < total; k++) {
    int n = (int)(k / ndst), i = (int)(k % ndst);
    size_t coff = 0;
    for (int j = 0; j < i; j++) coff += (size_t)dsts[j]->c;
    nn_tensor *d = dsts[i];
    const float *sp = src->data + ((size_t)n * src->c + coff) * hw;
    float *dp = d->data + (size_t)n * d->c * hw;
    size_t m = (size_t)d->c * hw;
    int acc = (acc_mask >> i) & 1u;
    if (y && i == ndst - 1) {
      size_t o = (size_t)n * d->c * hw;
      const float *yp = y->data + o;
      float *zp = dz->data + o;
      if (acc) {
#pragma omp simd
        for (size_t j = 0; j < m; j++) zp[j] = (dp[j] + sp[j]) * lrelu_gain(yp[j], sb);
      } else {
#pragma omp simd
        for (size_t j = 0; j < m; j++) zp[j] = sp[j] * lrelu_gain(yp[j], sb);
      }
    } else if (acc) {
#pragma omp simd
      for (size_t j = 0; j < m; j++) dp[j] += sp[j];
    } else {
      memcpy(dp, sp, m * sizeof(float));
    }
  }
}

void nn_split(const nn_tensor *src, nn_tensor *const *dsts, int ndst,
              unsigned acc_mask) {
  split_impl(src, dsts, ndst, acc_mask, NULL, NULL, 0.0f);
}

void nn_split_lrelu(const nn_tensor *src, nn_tensor *const *dsts, int ndst,
                    unsigned acc_mask, const nn_tensor *y, nn_tensor *dz,
                    float slope) {
  split_impl(src, dsts, ndst, acc_mask, y, dz, slope);
}

/* Output (n, c, 2y+i, 2x+j) = input (n, 4c + 2i + j, y, x).  In nChw16c,
 * output channel block b of a pixel gathers 16 floats, stride 4, from
 * input blocks 4b .. 4b+3 of the source pixel; rows run in parallel. */
void nn_pixel_shuffle(const nn_tensor *x, nn_tensor *y) {
  int C = y->c, H = y->h, W = y->w, CB = (C + 15) / 16, XB = (4 * C + 15) / 16;
  size_t xhw = (size_t)x->h * x->w, yhw = (size_t)H * W;
  long rows = (long)y->n * CB * H;
#pragma omp parallel for schedule(static)
  for (long r = 0; r < rows; r++) {
    int oy = (int)(r % H), b = (int)(r / H % CB), n = (int)(r / H / CB);
    float *yp = y->data + (((size_t)n * CB + b) * yhw + (size_t)oy * W) * 16;
    const float *xrow = x->data + ((size_t)n * XB * xhw + (size_t)(oy >> 1) * x->w) * 16;
    int cmax = C - 16 * b < 16 ? C - 16 * b : 16;
    for (int ox = 0; ox < W; ox++) {
      int k = 2 * (oy & 1) + (ox & 1);
      const float *xp = xrow + (size_t)(ox >> 1) * 16;
      for (int j = 0; j < cmax; j++) {
        int ci = 4 * (16 * b + j) + k;
        yp[(size_t)ox * 16 + j] = xp[(size_t)(ci >> 4) * xhw * 16 + (ci & 15)];
      }
    }
  }
}

void nn_pixel_unshuffle(const nn_tensor *y, nn_tensor *x) {
  int C = y->c, H = y->h, W = y->w, CB = (C + 15) / 16, XB = (4 * C + 15) / 16;
  size_t xhw = (size_t)x->h * x->w, yhw = (size_t)H * W;
  long rows = (long)y->n * CB * H;
#pragma omp parallel for schedule(static)
  for (long r = 0; r < rows; r++) {
    int oy = (int)(r % H), b = (int)(r / H % CB), n = (int)(r / H / CB);
    const float *yp = y->data + (((size_t)n * CB + b) * yhw + (size_t)oy * W) * 16;
    float *xrow = x->data + ((size_t)n * XB * xhw + (size_t)(oy >> 1) * x->w) * 16;
    int cmax = C - 16 * b < 16 ? C - 16 * b : 16;
    for (int ox = 0; ox < W; ox++) {
      int k = 2 * (oy & 1) + (ox & 1);
      float *xp = xrow + (size_t)(ox >> 1) * 16;
      for (int j = 0; j < cmax; j++) {
        int ci = 4 * (16 * b + j) + k;
        xp[(size_t)(ci >> 4) * xhw * 16 + (ci & 15)] = yp[(size_t)ox * 16 + j];
      }
    }
  }
}

/* ---- losses ------------------------------------------------------------ */

double nn_l1_loss(const nn_tensor *a, const nn_tensor *b, nn_tensor *da,
                  float w) {
  double count = (double)a->n * a->c * a->h * a->w, sum = 0;
  const float *ap = a->data, *bp = b->data;
  long n = (long)a->nfloats;
#pragma omp parallel for simd reduction(+ : sum) schedule(static)
  for (long i = 0; i < n; i++) sum += fabsf(ap[i] - bp[i]);
  if (da) {
    float g = (float)(w / count);
    float *dp = da->data;
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) {
      float d = ap[i] - bp[i];
      dp[i] = d > 0 ? g : (d < 0 ? -g : 0.0f);
    }
  }
  return sum / count;
}

static double bce(double z, double t) {
  return (z > 0 ? z : 0) - z * t + log1p(exp(-fabs(z)));
}

static double sigm(double z) { return 1.0 / (1.0 + exp(-z)); }

/* mean over the batch of the logits at each patch position. */
static void batch_mean(const nn_tensor *t, double *m) {
  int hw = t->h * t->w;
  for (int p = 0; p < hw; p++) {
    double s = 0;
    for (int n = 0; n < t->n; n++) s += t->data[nn_off(t, n, 0, p / t->w, p % t->w)];
    m[p] = s / t->n;
  }
}

double nn_ragan_g_loss(const nn_tensor *real, const nn_tensor *fake,
                       nn_tensor *d_fake, float w) {
  int hw = real->h * real->w, N = real->n;
  double count = (double)N * hw, loss = 0;
  double *mr = malloc(sizeof(double) * (size_t)hw);
  if (!mr) return NAN;
  batch_mean(real, mr);
  if (d_fake) nn_zero(d_fake);
  for (int n = 0; n < N; n++)
    for (int p = 0; p < hw; p++) {
      size_t o = nn_off(fake, n, 0, p / fake->w, p % fake->w);
      double z = fake->data[o] - mr[p];
      loss += bce(z, 1.0);
      if (d_fake) d_fake->data[o] = (float)(w * (sigm(z) - 1.0) / count);
    }
  free(mr);
  return loss / count;
}

double nn_ragan_d_loss(const nn_tensor *real, const nn_tensor *fake,
                       nn_tensor *d_real, nn_tensor *d_fake) {
  int hw = real->h * real->w, N = real->n, W = real->w;
  double count = (double)N * hw, l1 = 0, l2 = 0;
  double *buf = calloc((size_t)hw * 4, sizeof(double));
  if (!buf) return NAN;
  double *mr = buf, *mf = buf + hw, *s1 = buf + 2 * hw, *s2 = buf + 3 * hw;
  batch_mean(real, mr);
  batch_mean(fake, mf);
  for (int n = 0; n < N; n++)
    for (int p = 0; p < hw; p++) {
      size_t o = nn_off(real, n, 0, p / W, p % W);
      double z1 = real->data[o] - mf[p], z2 = fake->data[o] - mr[p];
      l1 += bce(z1, 1.0);
      l2 += bce(z2, 0.0);
      double g1 = 0.5 * (sigm(z1) - 1.0) / count, g2 = 0.5 * sigm(z2) / count;
      s1[p] += g1, s2[p] += g2;
      if (d_real) d_real->data[o] = (float)g1;
      if (d_fake) d_fake->data[o] = (float)g2;
    }
  /* z1 = real - mean(fake), z2 = fake - mean(real): each side also gets
   * minus the batch mean of the other term's gradient. */
  for (int n = 0; n < N; n++)
    for (int p = 0; p < hw; p++) {
      size_t o = nn_off(real, n, 0, p / W, p % W);
      if (d_real) d_real->data[o] = (float)(d_real->data[o] - s2[p] / N);
      if (d_fake) d_fake->data[o] = (float)(d_fake->data[o] - s1[p] / N);
    }
  free(buf);
  return 0.5 * (l1 / count + l2 / count);
}

/* ---- Adam ---------------------------------------------------------------- */

int nn_adam_init(nn_adam *a, size_t n, float lr, float b1, float b2) {
  memset(a, 0, sizeof *a);
  a->n = n, a->lr = lr, a->b1 = b1, a->b2 = b2, a->eps = 1e-8f;
  a->m = falloc(n);
  a->v = falloc(n);
  if (!a->m || !a->v) {
    nn_adam_free(a);
    nn_seterr("out of memory for Adam state (%zu floats)", n);
    return PM_ENOMEM;
  }
  return 0;
}

void nn_adam_free(nn_adam *a) {
  if (!a) return;
  free(a->m);
  free(a->v);
  a->m = a->v = NULL;
}

/* The update in 4-float SSE lanes where the target has them: GCC keeps
 * sqrtf scalar (errno) unless the whole file loses -fmath-errno, and the
 * scalar loop was half of Adam's time.  Each lane does the scalar
 * expression's operations in the same order (sqrtps and divps round as
 * sqrtss and divss do), so both paths give the same bits. */
static void adam_range(long lo, long hi, float *params, const float *grads,
                       float *m, float *v, float b1, float b2, float eps,
                       float step_size, float bc2_sqrt) {
  long i = lo;
#ifdef __SSE2__
  __m128 vb1 = _mm_set1_ps(b1), vb2 = _mm_set1_ps(b2), v1b1 = _mm_set1_ps(1 - b1),
         v1b2 = _mm_set1_ps(1 - b2), veps = _mm_set1_ps(eps),
         vbc2 = _mm_set1_ps(bc2_sqrt), vstep = _mm_set1_ps(-step_size);
  for (; i + 4 <= hi; i += 4) {
    __m128 g = _mm_loadu_ps(grads + i);
    __m128 mi = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(m + i), vb1), _mm_mul_ps(g, v1b1));
    __m128 vi = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(v + i), vb2),
                           _mm_mul_ps(_mm_mul_ps(g, g), v1b2));
    _mm_storeu_ps(m + i, mi);
    _mm_storeu_ps(v + i, vi);
    __m128 denom = _mm_add_ps(_mm_div_ps(_mm_sqrt_ps(vi), vbc2), veps);
    __m128 p = _mm_add_ps(_mm_loadu_ps(params + i), _mm_mul_ps(vstep, _mm_div_ps(mi, denom)));
    _mm_storeu_ps(params + i, p);
  }
#endif
  for (; i < hi; i++) {
    float g = grads[i];
    m[i] = m[i] * b1 + g * (1 - b1);
    v[i] = v[i] * b2 + g * g * (1 - b2);
    float denom = sqrtf(v[i]) / bc2_sqrt + eps;
    params[i] += -step_size * (m[i] / denom);
  }
}

void nn_adam_step(nn_adam *a, float *params, const float *grads) {
  a->step++;
  double bc1 = 1.0 - pow((double)a->b1, (double)a->step);
  double bc2 = 1.0 - pow((double)a->b2, (double)a->step);
  float step_size = (float)(a->lr / bc1);
  float bc2_sqrt = (float)sqrt(bc2);
  long n = (long)a->n, chunk = 1L << 14;
  long nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
  for (long k = 0; k < nchunks; k++) {
    long lo = k * chunk, hi = lo + chunk < n ? lo + chunk : n;
    adam_range(lo, hi, params, grads, a->m, a->v, a->b1, a->b2, a->eps, step_size,
               bc2_sqrt);
  }
}
