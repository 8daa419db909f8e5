/* ckpt.c - checkpoint writer and validating reader.
 *
 * Layout (little-endian): a 128-byte header (magic "PMESRCK1", version,
 * model sizes, counters), the float arrays in a fixed order, then a 64-bit
 * checksum of everything before it.  The reader checks size, version,
 * model shape and checksum before it touches the trainer.  Version 2 adds
 * the samples done and the writer's rank count; version 1 still loads.
 * The batch in the header is the global batch, whatever the rank count.
 */
#include "ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "paramount.h"

#define CK_MAGIC "PMESRCK1"
#define CK_VERSION 2
#define CK_HDR 128

typedef struct {
  char magic[8];
  uint32_t version, header_size;
  int32_t hr, F, B, batch;
  uint64_t next_iter, seed, nimages;
  uint64_t nG, nD, nrun, stepG, stepD;
  uint64_t samples_done; /* version 2 */
  uint32_t nranks, reserved;
  uint8_t pad[CK_HDR - 8 - 8 - 16 - 8 * 8 - 16];
} ck_header;

_Static_assert(sizeof(ck_header) == CK_HDR, "checkpoint header is 128 bytes");

static uint64_t ck_hash(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, b + i, 8);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 29;
  }
  for (; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

typedef struct {
  const void *p;
  size_t n;
} span;

/* The global batch: what the iteration counter counts, on any rank count. */
static int32_t ck_batch(const esr_trainer *t) {
  return t->hp.gbatch > 0 ? t->hp.gbatch : t->hp.batch;
}

static int spans(const esr_trainer *t, span *s) {
  s[0] = (span){t->G.params, t->G.nparams * 4};
  s[1] = (span){t->optG.m, t->G.nparams * 4};
  s[2] = (span){t->optG.v, t->G.nparams * 4};
  s[3] = (span){t->D.params, t->D.nparams * 4};
  s[4] = (span){t->optD.m, t->D.nparams * 4};
  s[5] = (span){t->optD.v, t->D.nparams * 4};
  s[6] = (span){t->D.running, t->D.nrunning * 4};
  return 7;
}

static int write_all(int fd, const void *p, size_t n) {
  const char *b = p;
  while (n) {
    ssize_t w = write(fd, b, n > (1u << 30) ? (1u << 30) : n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    b += w, n -= (size_t)w;
  }
  return 0;
}

int esr_ckpt_save(const char *path, const esr_trainer *t, const esr_ckpt_meta *m,
                  char *err, size_t errlen) {
  ck_header h;
  memset(&h, 0, sizeof h);
  memcpy(h.magic, CK_MAGIC, 8);
  h.version = CK_VERSION, h.header_size = CK_HDR;
  h.hr = t->hp.hr, h.F = t->hp.F, h.B = t->hp.B, h.batch = ck_batch(t);
  h.next_iter = m->next_iter, h.seed = m->seed, h.nimages = m->nimages;
  h.samples_done = m->samples_done ? m->samples_done : m->next_iter * (uint64_t)h.batch;
  h.nranks = m->nranks ? m->nranks : 1;
  h.nG = t->G.nparams, h.nD = t->D.nparams, h.nrun = t->D.nrunning;
  h.stepG = t->optG.step, h.stepD = t->optD.step;
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
    snprintf(err, errlen, "checkpoint path too long");
    return PM_EINVAL;
  }
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
    return PM_EIO;
  }
  span s[8];
  int ns = spans(t, s);
  uint64_t sum = ck_hash(0xcbf29ce484222325ull, &h, sizeof h);
  int bad = write_all(fd, &h, sizeof h);
  for (int i = 0; i < ns && !bad; i++) {
    sum = ck_hash(sum, s[i].p, s[i].n);
    bad = write_all(fd, s[i].p, s[i].n);
  }
  if (!bad) bad = write_all(fd, &sum, 8);
  if (!bad) bad = fsync(fd);
  if (close(fd) != 0) bad = 1;
  if (bad || rename(tmp, path) != 0) {
    snprintf(err, errlen, "cannot write checkpoint %s: %s", path, strerror(errno));
    unlink(tmp);
    return PM_EIO;
  }
  char dirbuf[4096];
  snprintf(dirbuf, sizeof dirbuf, "%s", path);
  int dfd = open(dirname(dirbuf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return 0;
}

int esr_ckpt_load(const char *path, esr_trainer *t, esr_ckpt_meta *m, char *err,
                  size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "cannot open checkpoint %s: %s", path, strerror(errno));
    return PM_EIO;
  }
  ck_header h;
  int rc = PM_ECORRUPT;
  char *buf = NULL;
  if (fread(&h, sizeof h, 1, f) != 1) {
    snprintf(err, errlen, "%s: truncated checkpoint (no header)", path);
    goto out;
  }
  if (memcmp(h.magic, CK_MAGIC, 8) != 0) {
    snprintf(err, errlen, "%s: not a paramount-esrgan checkpoint", path);
    rc = PM_EPARSE;
    goto out;
  }
  if (h.version < 1 || h.version > CK_VERSION || h.header_size != CK_HDR) {
    snprintf(err, errlen, "%s: checkpoint version %u, this build reads versions 1 to %d", path,
             h.version, CK_VERSION);
    rc = PM_EPARSE;
    goto out;
  }
  if (h.version == 1) h.samples_done = h.next_iter * (uint64_t)h.batch, h.nranks = 1;
  if (h.hr != t->hp.hr || h.F != t->hp.F || h.B != t->hp.B || h.batch != ck_batch(t) ||
      h.nG != t->G.nparams || h.nD != t->D.nparams || h.nrun != t->D.nrunning) {
    snprintf(err, errlen,
             "%s: checkpoint is for hr %d, F %d, B %d, batch %d; this run has hr %d, F %d, "
             "B %d, batch %d",
             path, h.hr, h.F, h.B, h.batch, t->hp.hr, t->hp.F, t->hp.B, ck_batch(t));
    rc = PM_EINVAL;
    goto out;
  }
  size_t body = (size_t)(3 * h.nG + 3 * h.nD + h.nrun) * 4;
  buf = malloc(body + 8);
  if (!buf) {
    snprintf(err, errlen, "out of memory reading %s", path);
    rc = PM_ENOMEM;
    goto out;
  }
  size_t got = fread(buf, 1, body + 8, f);
  if (got != body + 8 || fgetc(f) != EOF) {
    snprintf(err, errlen, "%s: %s checkpoint (%zu bytes of body, expected %zu)", path,
             got < body + 8 ? "truncated" : "oversized", got, body + 8);
    goto out;
  }
  span s[8];
  int ns = spans(t, s);
  /* hash span by span, exactly as the writer did */
  uint64_t sum = ck_hash(0xcbf29ce484222325ull, &h, sizeof h), want;
  size_t off = 0;
  for (int i = 0; i < ns; i++) {
    sum = ck_hash(sum, buf + off, s[i].n);
    off += s[i].n;
  }
  memcpy(&want, buf + body, 8);
  if (sum != want) {
    snprintf(err, errlen, "%s: checksum mismatch, the checkpoint is corrupt", path);
    goto out;
  }
  if (h.samples_done != h.next_iter * (uint64_t)h.batch) {
    snprintf(err, errlen, "%s: %llu samples done in %llu iterations of batch %d: inconsistent",
             path, (unsigned long long)h.samples_done, (unsigned long long)h.next_iter, h.batch);
    goto out;
  }
  off = 0;
  for (int i = 0; i < ns; i++) {
    memcpy((void *)s[i].p, buf + off, s[i].n);
    off += s[i].n;
  }
  t->optG.step = h.stepG, t->optD.step = h.stepD;
  m->next_iter = h.next_iter, m->seed = h.seed, m->nimages = h.nimages;
  m->samples_done = h.samples_done, m->nranks = h.nranks;
  rc = esr_trainer_sync(t);
  if (rc) snprintf(err, errlen, "%s", nn_errmsg());
out:
  free(buf);
  fclose(f);
  return rc;
}
