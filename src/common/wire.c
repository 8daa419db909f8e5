/* wire.c - encoder and decoder of Paramount frames (see wire.h).
 *
 * The decoder faces the network: it trusts no length, copies strings into
 * fixed arrays only after checking them against their caps, and rejects a
 * payload with bytes left over.  fuzz/fuzz_wire.c exercises it.
 */
#include "wire.h"

#include <string.h>

#include "paramount.h"

typedef struct {
  uint8_t *p, *end;
  int err;
} wbuf;

static void put_u8(wbuf *b, uint8_t v) {
  if (b->err) return;
  if (b->end - b->p < 1) { b->err = PM_ETOOBIG; return; }
  *b->p++ = v;
}

static void put_u32(wbuf *b, uint32_t v) {
  if (b->err) return;
  if (b->end - b->p < 4) { b->err = PM_ETOOBIG; return; }
  for (int i = 0; i < 4; i++) *b->p++ = (uint8_t)(v >> (8 * i));
}

static void put_u64(wbuf *b, uint64_t v) {
  if (b->err) return;
  if (b->end - b->p < 8) { b->err = PM_ETOOBIG; return; }
  for (int i = 0; i < 8; i++) *b->p++ = (uint8_t)(v >> (8 * i));
}

/* Strings travel as u16 length + bytes, no NUL. */
static void put_str(wbuf *b, const char *s, size_t cap) {
  if (b->err) return;
  size_t n = strnlen(s, cap + 1);
  if (n > cap) { b->err = PM_ETOOBIG; return; }
  if ((size_t)(b->end - b->p) < 2 + n) { b->err = PM_ETOOBIG; return; }
  *b->p++ = (uint8_t)(n & 0xff);
  *b->p++ = (uint8_t)(n >> 8);
  memcpy(b->p, s, n);
  b->p += n;
}

int wire_encode(const wire_msg *m, uint8_t *buf, size_t cap, size_t *len) {
  if (!m || !buf || !len) return PM_EINVAL;
  if (cap < WIRE_HEADER_SIZE) return PM_ETOOBIG;
  size_t room = cap - WIRE_HEADER_SIZE;
  if (room > WIRE_MAX_PAYLOAD) room = WIRE_MAX_PAYLOAD;
  wbuf b = {buf + WIRE_HEADER_SIZE, buf + WIRE_HEADER_SIZE + room, 0};
  switch (m->type) {
  case WIRE_HELLO:
    put_str(&b, m->u.hello.token, WIRE_TOKEN_MAX);
    put_str(&b, m->u.hello.node, WIRE_NAME_MAX);
    put_str(&b, m->u.hello.app, WIRE_NAME_MAX);
    put_u32(&b, m->u.hello.rank);
    put_u32(&b, m->u.hello.pid);
    break;
  case WIRE_WELCOME:
    put_u32(&b, m->u.welcome.session);
    break;
  case WIRE_INIT_BEGIN:
  case WIRE_INIT_END:
    put_u64(&b, m->u.mark.t_ns);
    break;
  case WIRE_ITER:
    put_u64(&b, m->u.iter.iter);
    put_u64(&b, m->u.iter.t_begin_ns);
    put_u64(&b, m->u.iter.wall_ns);
    put_u64(&b, m->u.iter.compute_ns);
    put_u64(&b, m->u.iter.comm_ns);
    put_u64(&b, m->u.iter.samples);
    break;
  case WIRE_EPOCH:
    put_u64(&b, m->u.epoch.t_ns);
    put_u64(&b, m->u.epoch.epoch);
    put_u64(&b, m->u.epoch.last_iter);
    break;
  case WIRE_PHASE:
    put_u64(&b, m->u.phase.t_ns);
    put_u64(&b, m->u.phase.first_iter);
    put_u64(&b, m->u.phase.planned_iters);
    put_str(&b, m->u.phase.name, WIRE_NAME_MAX);
    break;
  case WIRE_CHECKPOINT:
    put_u64(&b, m->u.checkpoint.t_ns);
    put_u64(&b, m->u.checkpoint.iter);
    put_str(&b, m->u.checkpoint.path, WIRE_PATH_MAX);
    break;
  case WIRE_FINALIZE:
  case WIRE_HEARTBEAT:
    put_u64(&b, m->u.fin.t_ns);
    put_u64(&b, m->u.fin.dropped);
    put_u64(&b, m->u.fin.sent);
    break;
  case WIRE_STOP:
    put_u64(&b, m->u.stop.stop_iter);
    break;
  default:
    return PM_EINVAL;
  }
  if (b.err) return b.err;
  uint32_t plen = (uint32_t)(b.p - (buf + WIRE_HEADER_SIZE));
  wbuf h = {buf, buf + WIRE_HEADER_SIZE, 0};
  put_u8(&h, WIRE_MAGIC0);
  put_u8(&h, WIRE_MAGIC1);
  put_u8(&h, WIRE_VERSION);
  put_u8(&h, m->type);
  put_u32(&h, plen);
  *len = WIRE_HEADER_SIZE + plen;
  return 0;
}

typedef struct {
  const uint8_t *p, *end;
  const char *why;
} rbuf;

static uint32_t get_u32(rbuf *r) {
  if (r->why) return 0;
  if (r->end - r->p < 4) { r->why = "payload too short for its type"; return 0; }
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)r->p[i] << (8 * i);
  r->p += 4;
  return v;
}

static uint64_t get_u64(rbuf *r) {
  if (r->why) return 0;
  if (r->end - r->p < 8) { r->why = "payload too short for its type"; return 0; }
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)r->p[i] << (8 * i);
  r->p += 8;
  return v;
}

/* dst has room for cap bytes plus a NUL.  Embedded NULs are refused: a
 * string that would read differently in C than on the wire is an attack
 * or a bug. */
static void get_str(rbuf *r, char *dst, size_t cap) {
  dst[0] = '\0';
  if (r->why) return;
  if (r->end - r->p < 2) { r->why = "payload too short for its type"; return; }
  size_t n = (size_t)r->p[0] | ((size_t)r->p[1] << 8);
  r->p += 2;
  if (n > cap) { r->why = "string field longer than its cap"; return; }
  if ((size_t)(r->end - r->p) < n) { r->why = "string runs past the payload"; return; }
  if (memchr(r->p, '\0', n)) { r->why = "string field contains a NUL byte"; return; }
  memcpy(dst, r->p, n);
  dst[n] = '\0';
  r->p += n;
}

int wire_decode(const uint8_t *buf, size_t len, wire_msg *out,
                size_t *consumed, const char **why) {
  const char *dummy;
  if (!why) why = &dummy;
  *why = NULL;
  if (!buf || !out || !consumed) {
    *why = "null argument";
    return PM_EINVAL;
  }
  /* Check what we have of the header as early as possible, so garbage is
   * refused on its first bytes rather than after a cap's worth of them. */
  if (len >= 1 && buf[0] != WIRE_MAGIC0) { *why = "bad magic"; return PM_EPROTO; }
  if (len >= 2 && buf[1] != WIRE_MAGIC1) { *why = "bad magic"; return PM_EPROTO; }
  if (len >= 3 && buf[2] != WIRE_VERSION) { *why = "unsupported protocol version"; return PM_EPROTO; }
  if (len >= 4 && (buf[3] < 1 || buf[3] > WIRE_TYPE_MAX_)) { *why = "unknown frame type"; return PM_EPROTO; }
  if (len < WIRE_HEADER_SIZE) return PM_EAGAIN;
  uint32_t plen = (uint32_t)buf[4] | ((uint32_t)buf[5] << 8) |
                  ((uint32_t)buf[6] << 16) | ((uint32_t)buf[7] << 24);
  if (plen > WIRE_MAX_PAYLOAD) { *why = "payload length above the cap"; return PM_ETOOBIG; }
  if (len - WIRE_HEADER_SIZE < plen) return PM_EAGAIN;

  rbuf r = {buf + WIRE_HEADER_SIZE, buf + WIRE_HEADER_SIZE + plen, NULL};
  memset(out, 0, sizeof *out);
  out->type = buf[3];
  switch (out->type) {
  case WIRE_HELLO:
    get_str(&r, out->u.hello.token, WIRE_TOKEN_MAX);
    get_str(&r, out->u.hello.node, WIRE_NAME_MAX);
    get_str(&r, out->u.hello.app, WIRE_NAME_MAX);
    out->u.hello.rank = get_u32(&r);
    out->u.hello.pid = get_u32(&r);
    break;
  case WIRE_WELCOME:
    out->u.welcome.session = get_u32(&r);
    break;
  case WIRE_INIT_BEGIN:
  case WIRE_INIT_END:
    out->u.mark.t_ns = get_u64(&r);
    break;
  case WIRE_ITER:
    out->u.iter.iter = get_u64(&r);
    out->u.iter.t_begin_ns = get_u64(&r);
    out->u.iter.wall_ns = get_u64(&r);
    out->u.iter.compute_ns = get_u64(&r);
    out->u.iter.comm_ns = get_u64(&r);
    out->u.iter.samples = get_u64(&r);
    break;
  case WIRE_EPOCH:
    out->u.epoch.t_ns = get_u64(&r);
    out->u.epoch.epoch = get_u64(&r);
    out->u.epoch.last_iter = get_u64(&r);
    break;
  case WIRE_PHASE:
    out->u.phase.t_ns = get_u64(&r);
    out->u.phase.first_iter = get_u64(&r);
    out->u.phase.planned_iters = get_u64(&r);
    get_str(&r, out->u.phase.name, WIRE_NAME_MAX);
    break;
  case WIRE_CHECKPOINT:
    out->u.checkpoint.t_ns = get_u64(&r);
    out->u.checkpoint.iter = get_u64(&r);
    get_str(&r, out->u.checkpoint.path, WIRE_PATH_MAX);
    break;
  case WIRE_FINALIZE:
  case WIRE_HEARTBEAT:
    out->u.fin.t_ns = get_u64(&r);
    out->u.fin.dropped = get_u64(&r);
    out->u.fin.sent = get_u64(&r);
    break;
  case WIRE_STOP:
    out->u.stop.stop_iter = get_u64(&r);
    break;
  }
  if (!r.why && r.p != r.end) r.why = "payload longer than its type";
  if (r.why) {
    *why = r.why;
    return PM_EPROTO;
  }
  *consumed = WIRE_HEADER_SIZE + plen;
  return 0;
}

const char *wire_type_name(int type) {
  static const char *const names[] = {
      "UNKNOWN", "HELLO", "WELCOME", "INIT_BEGIN", "INIT_END", "ITER",
      "EPOCH", "PHASE", "CHECKPOINT", "FINALIZE", "STOP", "HEARTBEAT"};
  if (type < 1 || type > WIRE_TYPE_MAX_) return names[0];
  return names[type];
}
