/* intake.c - see intake.h.
 *
 * One epoll loop, level-triggered, one read per ready connection per turn
 * (fair to 64 busy senders), each read into one large shared buffer so
 * that a single read brings in hundreds of frames.  A connection keeps
 * only the tail of a frame cut by a read (< WIRE_MAX_FRAME bytes), so
 * thousands of idle ranks cost little memory.
 */
#include "intake.h"

#include <arpa/inet.h>
#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "paramount.h"

#define INTAKE_RX_CAP (256 * 1024)
#define INTAKE_TX_CAP 256 /* WELCOME + a few STOPs; a peer not reading is cut */
#define INTAKE_EVENTS_MAX 256
#define INTAKE_PHASES_MAX 1024 /* declared per rank (each PI looks them up) */

enum { CONN_HELLO = 0, CONN_ACTIVE = 1 };

typedef struct conn {
  int fd;
  int state;
  int want_out; /* EPOLLOUT registered */
  uint64_t id;
  uint64_t deadline_mono_ns; /* HELLO must arrive before this */
  intake_rank *rank;         /* borrowed from the rank table once active */
  struct conn *prev, *next;
  size_t carry_len, tx_len;
  char peer[64];
  uint8_t tx[INTAKE_TX_CAP];
  uint8_t carry[WIRE_MAX_FRAME];
} conn;

struct intake {
  int lfd, epfd;
  int family;
  uint16_t port;
  int loopback;
  char host[INET6_ADDRSTRLEN];
  char token[WIRE_TOKEN_MAX + 1]; /* zero-padded for the constant-time compare */
  journal *jr;
  int hello_timeout_ms, max_conns;
  char *checkpoint_root; /* owned; NULL: anywhere */
  conn *conns; /* every open connection */
  int n_pending;
  uint64_t next_conn_id;
  intake_rank **ranks; /* sorted by rank number */
  size_t n_ranks, cap_ranks;
  int stop_requested;
  uint64_t stop_iter;
  int child_exited;
  double now_s;    /* controller time of the current read, for the journal */
  uint64_t now_ns; /* the same in ns */
  intake_stats st;
  uint8_t *rx;
  char listen_tag, child_tag; /* addresses used as epoll tags */
};

/* ---- journal --------------------------------------------------------- */

static struct json_object *jrec_new(const char *ev, double t) {
  struct json_object *o = json_object_new_object();
  if (!o) return NULL;
  json_object_object_add(o, "ev", json_object_new_string(ev));
  json_object_object_add(o, "t", json_object_new_double(t));
  return o;
}

static void jrec_u64(struct json_object *o, const char *k, uint64_t v) {
  json_object_object_add(o, k, json_object_new_uint64(v));
}

static void jrec_str(struct json_object *o, const char *k, const char *v) {
  json_object_object_add(o, k, json_object_new_string(v));
}

/* Appends and frees o.  A journal failure is logged once per loop, not
 * fatal: losing the journal must not lose the run. */
static void jrec_put(intake *in, struct json_object *o) {
  if (!o) return;
  if (in->jr && journal_append(in->jr, o) != 0) {
    static int warned;
    if (!warned++) log_warn("cannot append to the journal; events are kept in memory only");
  }
  json_object_put(o);
}

/* PI records are the hot path (a million a second): they are rendered
 * here with integer formatting instead of through json-c, which costs
 * about ten times more per record.  The result parses like any other. */
static char *fmt_u64(char *p, uint64_t v) {
  char tmp[20];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) *p++ = tmp[--n];
  return p;
}

static char *fmt_lit(char *p, const char *lit, size_t n) {
  memcpy(p, lit, n);
  return p + n;
}
#define FMT_LIT_(p, s) fmt_lit(p, s, sizeof s - 1)

static void pi_record_journal(intake *in, uint32_t rank, const wire_msg *m) {
  if (!in->jr) return;
  char line[320], *p = line;
  p = FMT_LIT_(p, "{\"ev\":\"pi\",\"t\":");
  p = fmt_u64(p, in->now_ns / 1000000000ull);
  *p++ = '.';
  uint64_t us = in->now_ns % 1000000000ull / 1000;
  for (uint64_t d = 100000; d; d /= 10) *p++ = (char)('0' + us / d % 10);
  p = FMT_LIT_(p, ",\"rank\":");
  p = fmt_u64(p, rank);
  p = FMT_LIT_(p, ",\"iter\":");
  p = fmt_u64(p, m->u.iter.iter);
  p = FMT_LIT_(p, ",\"t_begin_ns\":");
  p = fmt_u64(p, m->u.iter.t_begin_ns);
  p = FMT_LIT_(p, ",\"wall_ns\":");
  p = fmt_u64(p, m->u.iter.wall_ns);
  p = FMT_LIT_(p, ",\"compute_ns\":");
  p = fmt_u64(p, m->u.iter.compute_ns);
  p = FMT_LIT_(p, ",\"comm_ns\":");
  p = fmt_u64(p, m->u.iter.comm_ns);
  p = FMT_LIT_(p, ",\"samples\":");
  p = fmt_u64(p, m->u.iter.samples);
  *p++ = '}';
  if (journal_append_line(in->jr, line, (size_t)(p - line)) != 0) {
    static int warned;
    if (!warned++) log_warn("cannot append to the journal; events are kept in memory only");
  }
}

/* ---- helpers --------------------------------------------------------- */

static void set_err(const intake_opts *o, const char *fmt, const char *a,
                    const char *b) {
  if (o->err && o->err_cap) snprintf(o->err, o->err_cap, fmt, a, b);
}

/* Grows *arr (element size sz) so that one more element fits. */
static int grow(void **arr, size_t *cap, size_t n, size_t sz) {
  if (n < *cap) return 0;
  size_t nc = *cap ? *cap * 2 : 16;
  void *p = realloc(*arr, nc * sz);
  if (!p) return PM_ENOMEM;
  *arr = p;
  *cap = nc;
  return 0;
}

/* Compares every byte of both zero-padded buffers whatever they hold, so
 * the time taken says nothing about how much of a guess was right. */
static int token_equal(const char *a, const char *b) {
  volatile unsigned char diff = 0;
  for (size_t i = 0; i <= WIRE_TOKEN_MAX; i++)
    diff |= (unsigned char)a[i] ^ (unsigned char)b[i];
  return diff == 0;
}

static void peer_format(const struct sockaddr_storage *ss, char *buf, size_t cap) {
  char host[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *s = (const void *)ss;
    inet_ntop(AF_INET, &s->sin_addr, host, sizeof host);
    port = ntohs(s->sin_port);
    snprintf(buf, cap, "%s:%u", host, port);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *s = (const void *)ss;
    inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof host);
    port = ntohs(s->sin6_port);
    snprintf(buf, cap, "[%s]:%u", host, port);
  } else {
    snprintf(buf, cap, "?");
  }
}

/* ---- ranks ----------------------------------------------------------- */

static size_t rank_lower_bound(const intake *in, uint32_t rank) {
  size_t lo = 0, hi = in->n_ranks;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (in->ranks[mid]->rank < rank) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const intake_rank *intake_rank_find(const intake *in, uint32_t rank) {
  if (!in) return NULL;
  size_t i = rank_lower_bound(in, rank);
  return i < in->n_ranks && in->ranks[i]->rank == rank ? in->ranks[i] : NULL;
}

static intake_rank *rank_get(intake *in, uint32_t rank) {
  size_t i = rank_lower_bound(in, rank);
  if (i < in->n_ranks && in->ranks[i]->rank == rank) return in->ranks[i];
  if (grow((void **)&in->ranks, &in->cap_ranks, in->n_ranks, sizeof *in->ranks))
    return NULL;
  intake_rank *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->rank = rank;
  memmove(in->ranks + i + 1, in->ranks + i, (in->n_ranks - i) * sizeof *in->ranks);
  in->ranks[i] = r;
  in->n_ranks++;
  return r;
}

static void rank_free(intake_rank *r) {
  free(r->pis);
  free(r->epochs);
  free(r->checkpoints);
  free(r->phases);
  free(r);
}

const intake_rank *const *intake_ranks(const intake *in, size_t *n) {
  if (n) *n = in ? in->n_ranks : 0;
  return in ? (const intake_rank *const *)in->ranks : NULL;
}

/* ---- connections ----------------------------------------------------- */

static const char *conn_who(const conn *c, char *buf, size_t cap) {
  if (c->rank)
    snprintf(buf, cap, "rank %u (%s, %s)", c->rank->rank, c->rank->node, c->peer);
  else
    snprintf(buf, cap, "connection from %s", c->peer);
  return buf;
}

/* Closes c.  why == NULL is an orderly end; otherwise it is logged and
 * journaled as the reason the controller cut the connection. */
static void conn_close(intake *in, conn *c, const char *ev, const char *why) {
  char who[160];
  conn_who(c, who, sizeof who);
  struct json_object *o = jrec_new(ev, clock_real_s());
  jrec_u64(o, "conn", c->id);
  jrec_str(o, "peer", c->peer);
  if (c->rank) jrec_u64(o, "rank", c->rank->rank);
  if (why) jrec_str(o, "why", why);
  if (!strcmp(ev, "disconnect") && c->rank)
    json_object_object_add(o, "finalized", json_object_new_boolean(c->rank->finalized));
  jrec_put(in, o);
  if (why) log_warn("%s: closing: %s", who, why);
  else if (c->rank && !c->rank->finalized)
    log_warn("%s closed its connection before FINALIZE", who);

  epoll_ctl(in->epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  if (c->state == CONN_HELLO) in->n_pending--;
  if (c->rank && c->rank->connected > 0) c->rank->connected--;
  if (c->prev) c->prev->next = c->next;
  else in->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  in->st.open_conns--;
  free(c);
}

static void conn_refuse(intake *in, conn *c, const char *why) {
  in->st.refused++;
  conn_close(in, c, "conn_refused", why);
}

static void conn_proto_error(intake *in, conn *c, const char *why) {
  in->st.proto_errors++;
  conn_close(in, c, "conn_error", why);
}

/* Queues a frame; returns -1 when c had to be closed. */
static int conn_send(intake *in, conn *c, const uint8_t *buf, size_t len) {
  if (c->tx_len == 0) {
    ssize_t w = send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        conn_close(in, c, "disconnect", "send failed");
        return -1;
      }
      w = 0;
    }
    buf += w;
    len -= (size_t)w;
    if (len == 0) return 0;
  }
  if (c->tx_len + len > sizeof c->tx) {
    conn_proto_error(in, c, "peer does not read what the controller sends");
    return -1;
  }
  memcpy(c->tx + c->tx_len, buf, len);
  c->tx_len += len;
  if (!c->want_out) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(in->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = 1;
  }
  return 0;
}

static int conn_flush_tx(intake *in, conn *c) {
  while (c->tx_len > 0) {
    ssize_t w = send(c->fd, c->tx, c->tx_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      conn_close(in, c, "disconnect", "send failed");
      return -1;
    }
    memmove(c->tx, c->tx + w, c->tx_len - (size_t)w);
    c->tx_len -= (size_t)w;
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
  epoll_ctl(in->epfd, EPOLL_CTL_MOD, c->fd, &ev);
  c->want_out = 0;
  return 0;
}

static int conn_send_msg(intake *in, conn *c, const wire_msg *m) {
  uint8_t buf[64];
  size_t len;
  if (wire_encode(m, buf, sizeof buf, &len) != 0) return 0; /* cannot happen */
  return conn_send(in, c, buf, len);
}

static void accept_all(intake *in) {
  for (;;) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = accept4(in->lfd, (struct sockaddr *)&ss, &sl,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        static int warned;
        if (!warned++) log_warn("accept failed: %s", strerror(errno));
      }
      return;
    }
    in->st.accepted++;
    char peer[64];
    peer_format(&ss, peer, sizeof peer);
    if (in->st.open_conns >= in->max_conns) {
      in->st.refused++;
      log_warn("connection from %s refused: %d connections already open", peer,
               in->max_conns);
      close(fd);
      continue;
    }
    conn *c = calloc(1, sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    c->fd = fd;
    c->id = ++in->next_conn_id;
    c->state = CONN_HELLO;
    c->deadline_mono_ns = clock_mono_ns() + (uint64_t)in->hello_timeout_ms * 1000000ull;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(in->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
      close(fd);
      free(c);
      continue;
    }
    c->next = in->conns;
    if (in->conns) in->conns->prev = c;
    in->conns = c;
    in->st.open_conns++;
    in->n_pending++;
  }
}

/* ---- frames ---------------------------------------------------------- */

static int handle_hello(intake *in, conn *c, const wire_msg *m) {
  char tok[WIRE_TOKEN_MAX + 1];
  memset(tok, 0, sizeof tok);
  memcpy(tok, m->u.hello.token, strnlen(m->u.hello.token, WIRE_TOKEN_MAX));
  if (!token_equal(tok, in->token)) {
    conn_refuse(in, c, "HELLO with a wrong token");
    return -1;
  }
  if (m->u.hello.rank > INTAKE_MAX_RANK) {
    conn_refuse(in, c, "HELLO with a rank number above the limit");
    return -1;
  }
  intake_rank *r = rank_get(in, m->u.hello.rank);
  if (!r) {
    conn_refuse(in, c, "out of memory for a new rank");
    return -1;
  }
  if (r->connected)
    log_warn("rank %u connects again while a connection for it is open (from %s)",
             r->rank, c->peer);
  snprintf(r->node, sizeof r->node, "%s", m->u.hello.node);
  snprintf(r->app, sizeof r->app, "%s", m->u.hello.app);
  r->pid = m->u.hello.pid;
  r->connections++;
  r->connected++;
  r->last_heard_ns = in->now_ns; /* silence is judged from the HELLO on */
  c->rank = r;
  c->state = CONN_ACTIVE;
  in->n_pending--;
  in->st.authenticated++;

  struct json_object *o = jrec_new("hello", in->now_s);
  jrec_u64(o, "conn", c->id);
  jrec_u64(o, "rank", r->rank);
  jrec_str(o, "node", r->node);
  jrec_str(o, "app", r->app);
  jrec_u64(o, "pid", r->pid);
  jrec_str(o, "peer", c->peer);
  jrec_put(in, o); /* never the token */
  log_debug("rank %u (%s, pid %u) connected from %s", r->rank, r->node, r->pid, c->peer);

  wire_msg w = {.type = WIRE_WELCOME};
  w.u.welcome.session = (uint32_t)c->id;
  if (conn_send_msg(in, c, &w) != 0) return -1;
  if (in->stop_requested) {
    wire_msg s = {.type = WIRE_STOP};
    s.u.stop.stop_iter = in->stop_iter;
    if (conn_send_msg(in, c, &s) != 0) return -1;
  }
  return 0;
}

static void journal_simple(intake *in, const char *ev, uint32_t rank,
                           uint64_t t_ns) {
  struct json_object *o = jrec_new(ev, in->now_s);
  jrec_u64(o, "rank", rank);
  jrec_u64(o, "t_ns", t_ns);
  jrec_put(in, o);
}

/* The phase a PI belongs to: of the phases the rank declared, the one
 * that starts latest at or before the iteration (the later declaration on
 * a tie); -1 before any.  So a rank may declare every phase of its plan
 * up front (pm_phase with a first_iter still ahead) and its PIs still fall
 * in the phase they run in; declaring on entry works the same. */
static int32_t intake_phase_of(const intake_rank *r, uint64_t iter) {
  int32_t best = -1;
  for (size_t i = 0; i < r->n_phases; i++)
    if (r->phases[i].first_iter <= iter &&
        (best < 0 || r->phases[i].first_iter >= r->phases[best].first_iter))
      best = (int32_t)i;
  return best;
}

/* Handles one decoded frame of an authenticated connection; -1 when c was
 * closed. */
static int handle_frame(intake *in, conn *c, const wire_msg *m) {
  intake_rank *r = c->rank;
  r->last_heard_ns = in->now_ns;
  struct json_object *o;
  switch (m->type) {
  case WIRE_ITER: {
    if (grow((void **)&r->pis, &r->cap_pis, r->n_pis, sizeof *r->pis)) {
      conn_proto_error(in, c, "out of memory for the PI series");
      return -1;
    }
    intake_pi *p = &r->pis[r->n_pis++];
    p->iter = m->u.iter.iter;
    p->t_begin_ns = m->u.iter.t_begin_ns;
    p->wall_ns = m->u.iter.wall_ns;
    p->compute_ns = m->u.iter.compute_ns;
    p->comm_ns = m->u.iter.comm_ns;
    p->samples = m->u.iter.samples;
    p->phase = intake_phase_of(r, p->iter);
    pi_record_journal(in, r->rank, m);
    return 0;
  }
  case WIRE_INIT_BEGIN:
    r->init_begin_ns = m->u.mark.t_ns;
    journal_simple(in, "init_begin", r->rank, m->u.mark.t_ns);
    return 0;
  case WIRE_INIT_END:
    r->init_end_ns = m->u.mark.t_ns;
    journal_simple(in, "init_end", r->rank, m->u.mark.t_ns);
    return 0;
  case WIRE_EPOCH:
    if (grow((void **)&r->epochs, &r->cap_epochs, r->n_epochs, sizeof *r->epochs)) {
      conn_proto_error(in, c, "out of memory for the epochs");
      return -1;
    }
    r->epochs[r->n_epochs++] = (intake_epoch){m->u.epoch.t_ns, m->u.epoch.epoch,
                                              m->u.epoch.last_iter};
    o = jrec_new("epoch", in->now_s);
    jrec_u64(o, "rank", r->rank);
    jrec_u64(o, "t_ns", m->u.epoch.t_ns);
    jrec_u64(o, "epoch", m->u.epoch.epoch);
    jrec_u64(o, "last_iter", m->u.epoch.last_iter);
    jrec_put(in, o);
    return 0;
  case WIRE_PHASE: {
    if (r->n_phases == INTAKE_PHASES_MAX) {
      conn_proto_error(in, c, "more than 1024 phases declared");
      return -1;
    }
    if (grow((void **)&r->phases, &r->cap_phases, r->n_phases, sizeof *r->phases)) {
      conn_proto_error(in, c, "out of memory for the phases");
      return -1;
    }
    intake_phase *ph = &r->phases[r->n_phases++];
    ph->t_ns = m->u.phase.t_ns;
    ph->first_iter = m->u.phase.first_iter;
    ph->planned_iters = m->u.phase.planned_iters;
    snprintf(ph->name, sizeof ph->name, "%s", m->u.phase.name);
    o = jrec_new("phase", in->now_s);
    jrec_u64(o, "rank", r->rank);
    jrec_u64(o, "t_ns", ph->t_ns);
    jrec_str(o, "name", ph->name);
    jrec_u64(o, "first_iter", ph->first_iter);
    jrec_u64(o, "planned_iters", ph->planned_iters);
    jrec_put(in, o);
    return 0;
  }
  case WIRE_CHECKPOINT: {
    char why[PATH_MAX + 128];
    if (intake_checkpoint_path_check(m->u.checkpoint.path, in->checkpoint_root, why,
                                     sizeof why)) {
      /* The rank keeps its connection and its data; only this path is
       * never offered to a resume. */
      log_warn("rank %u: checkpoint refused: %s", r->rank, why);
      o = jrec_new("checkpoint_refused", in->now_s);
      jrec_u64(o, "rank", r->rank);
      jrec_u64(o, "iter", m->u.checkpoint.iter);
      jrec_str(o, "why", why);
      jrec_put(in, o);
      return 0;
    }
    if (grow((void **)&r->checkpoints, &r->cap_checkpoints, r->n_checkpoints,
             sizeof *r->checkpoints)) {
      conn_proto_error(in, c, "out of memory for the checkpoints");
      return -1;
    }
    intake_checkpoint *k = &r->checkpoints[r->n_checkpoints++];
    k->t_ns = m->u.checkpoint.t_ns;
    k->iter = m->u.checkpoint.iter;
    snprintf(k->path, sizeof k->path, "%s", m->u.checkpoint.path);
    o = jrec_new("checkpoint", in->now_s);
    jrec_u64(o, "rank", r->rank);
    jrec_u64(o, "t_ns", k->t_ns);
    jrec_u64(o, "iter", k->iter);
    jrec_str(o, "path", k->path);
    jrec_put(in, o);
    return 0;
  }
  case WIRE_FINALIZE:
  case WIRE_HEARTBEAT:
    r->dropped = m->u.fin.dropped;
    r->sent = m->u.fin.sent;
    if (m->type == WIRE_FINALIZE) {
      r->finalized = 1;
      r->finalize_ns = m->u.fin.t_ns;
    } else {
      r->last_heartbeat_ns = r->last_heard_ns;
    }
    o = jrec_new(m->type == WIRE_FINALIZE ? "finalize" : "heartbeat", in->now_s);
    jrec_u64(o, "rank", r->rank);
    jrec_u64(o, "t_ns", m->u.fin.t_ns);
    jrec_u64(o, "dropped", m->u.fin.dropped);
    jrec_u64(o, "sent", m->u.fin.sent);
    jrec_put(in, o);
    if (m->type == WIRE_FINALIZE && m->u.fin.dropped)
      log_warn("rank %u dropped %llu events it could not send", r->rank,
               (unsigned long long)m->u.fin.dropped);
    return 0;
  default: {
    char why[96];
    snprintf(why, sizeof why, "unexpected %s frame from a client",
             wire_type_name(m->type));
    conn_proto_error(in, c, why);
    return -1;
  }
  }
}

/* Reads once from c and handles every whole frame.  Returns the number of
 * frames handled; c may have been closed (it is then not touched again). */
static int conn_read(intake *in, conn *c) {
  uint8_t *buf = in->rx;
  memcpy(buf, c->carry, c->carry_len);
  size_t have = c->carry_len;
  ssize_t n;
  do {
    n = read(c->fd, buf + have, INTAKE_RX_CAP - have);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    conn_close(in, c, "disconnect", have ? "connection reset mid-frame" : NULL);
    return 0;
  }
  if (n == 0) {
    if (c->state == CONN_HELLO)
      conn_refuse(in, c, have ? "closed in the middle of its HELLO" : "closed before HELLO");
    else if (have) conn_proto_error(in, c, "connection closed in the middle of a frame");
    else conn_close(in, c, "disconnect", NULL);
    return 0;
  }
  in->st.bytes_in += (uint64_t)n;
  have += (size_t)n;
  in->now_ns = clock_real_ns();
  in->now_s = (double)in->now_ns / 1e9;

  int frames = 0;
  size_t off = 0;
  wire_msg m;
  while (off < have) {
    size_t used = 0;
    const char *why = NULL;
    int rc = wire_decode(buf + off, have - off, &m, &used, &why);
    if (rc == PM_EAGAIN) break;
    if (rc != 0) {
      if (c->state == CONN_HELLO) conn_refuse(in, c, why);
      else conn_proto_error(in, c, why);
      return frames;
    }
    off += used;
    if (c->state == CONN_HELLO) {
      if (m.type != WIRE_HELLO) {
        char w[80];
        snprintf(w, sizeof w, "first frame is %s, not HELLO", wire_type_name(m.type));
        conn_refuse(in, c, w);
        return frames;
      }
      if (handle_hello(in, c, &m) != 0) return frames;
      continue;
    }
    if (m.type == WIRE_HELLO) {
      conn_proto_error(in, c, "second HELLO on one connection");
      return frames;
    }
    frames++;
    in->st.frames++;
    if (handle_frame(in, c, &m) != 0) return frames;
  }
  /* A valid partial frame is shorter than WIRE_MAX_FRAME (the decoder
   * checked its length field), so it always fits the carry. */
  c->carry_len = have - off;
  memcpy(c->carry, buf + off, c->carry_len);
  return frames;
}

static void expire_hellos(intake *in, uint64_t now_mono) {
  conn *c = in->conns;
  while (c) {
    conn *next = c->next;
    if (c->state == CONN_HELLO && now_mono >= c->deadline_mono_ns)
      conn_refuse(in, c, "no HELLO within the time limit");
    c = next;
  }
}

/* ---- checkpoint paths -------------------------------------------------- */

/* 1 when path is root or below it, comparing whole components. */
static int path_is_under(const char *path, const char *root) {
  size_t n = strlen(root);
  while (n > 1 && root[n - 1] == '/') n--;
  if (n == 1 && root[0] == '/') return 1;
  return !strncmp(path, root, n) && (path[n] == '/' || path[n] == '\0');
}

int intake_checkpoint_path_check(const char *path, const char *root, char *why, size_t cap) {
  if (!path || path[0] != '/') {
    snprintf(why, cap, "checkpoint path '%s' is not absolute", path ? path : "");
    return PM_EINVAL;
  }
  for (const char *p = path; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) {
      snprintf(why, cap, "checkpoint path holds a control character");
      return PM_EINVAL;
    }
  for (const char *p = path; *p;) {
    const char *e = strchr(p + 1, '/');
    size_t n = e ? (size_t)(e - p - 1) : strlen(p + 1);
    if (n == 0 || (n == 1 && p[1] == '.') || (n == 2 && p[1] == '.' && p[2] == '.')) {
      snprintf(why, cap, "checkpoint path '%s' has an empty, '.' or '..' component", path);
      return PM_EINVAL;
    }
    if (!e) break;
    p = e;
  }
  if (!root) return 0;
  char root_real[PATH_MAX], real[PATH_MAX];
  if (!realpath(root, root_real)) {
    snprintf(why, cap, "checkpoint directory '%s' does not exist", root);
    return PM_EINVAL;
  }
  /* Lexically first (the file may not exist yet), then as resolved. */
  if ((!path_is_under(path, root) && !path_is_under(path, root_real)) ||
      (realpath(path, real) && !path_is_under(real, root_real))) {
    snprintf(why, cap, "checkpoint path '%s' is outside %s", path, root);
    return PM_EINVAL;
  }
  return 0;
}

/* ---- public ---------------------------------------------------------- */

int intake_open(const intake_opts *o, intake **out) {
  *out = NULL;
  if (!o || !o->token || !*o->token) {
    if (o) set_err(o, "%s%s", "a run token is required", "");
    return PM_EINVAL;
  }
  if (strlen(o->token) > WIRE_TOKEN_MAX) {
    set_err(o, "%s%s", "the run token is longer than 128 bytes", "");
    return PM_EINVAL;
  }
  const char *host = o->listen_host && *o->listen_host ? o->listen_host : "127.0.0.1";
  intake *in = calloc(1, sizeof *in);
  if (!in) return PM_ENOMEM;
  in->lfd = in->epfd = -1;
  memcpy(in->token, o->token, strlen(o->token));
  in->jr = o->journal;
  in->hello_timeout_ms = o->hello_timeout_ms > 0 ? o->hello_timeout_ms : INTAKE_HELLO_TIMEOUT_MS;
  in->max_conns = o->max_conns > 0 ? o->max_conns : INTAKE_MAX_CONNS;
  int rc = PM_ENOMEM;
  if (o->checkpoint_root && !(in->checkpoint_root = strdup(o->checkpoint_root))) goto fail;
  in->rx = malloc(INTAKE_RX_CAP);
  if (!in->rx) goto fail;

  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_NUMERICHOST | AI_PASSIVE};
  struct addrinfo *ai = NULL;
  char port_s[8];
  snprintf(port_s, sizeof port_s, "%u", (unsigned)o->port);
  if (getaddrinfo(host, port_s, &hints, &ai) != 0 || !ai) {
    set_err(o, "listen address '%s' is not a numeric IPv4 or IPv6 address%s", host, "");
    rc = PM_EINVAL;
    goto fail;
  }
  in->family = ai->ai_family;
  in->lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (in->lfd < 0) {
    freeaddrinfo(ai);
    set_err(o, "socket: %s%s", strerror(errno), "");
    rc = PM_ESYS;
    goto fail;
  }
  int one = 1;
  setsockopt(in->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(in->lfd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(in->lfd, 1024) != 0) {
    set_err(o, "cannot listen on %s: %s", host, strerror(errno));
    freeaddrinfo(ai);
    rc = PM_ESYS;
    goto fail;
  }
  freeaddrinfo(ai);
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  getsockname(in->lfd, (struct sockaddr *)&ss, &sl);
  if (ss.ss_family == AF_INET) {
    const struct sockaddr_in *s = (const void *)&ss;
    in->port = ntohs(s->sin_port);
    in->loopback = (ntohl(s->sin_addr.s_addr) >> 24) == 127;
    inet_ntop(AF_INET, &s->sin_addr, in->host, sizeof in->host);
  } else {
    const struct sockaddr_in6 *s = (const void *)&ss;
    in->port = ntohs(s->sin6_port);
    in->loopback = IN6_IS_ADDR_LOOPBACK(&s->sin6_addr);
    inet_ntop(AF_INET6, &s->sin6_addr, in->host, sizeof in->host);
  }

  in->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (in->epfd < 0) {
    set_err(o, "epoll_create1: %s%s", strerror(errno), "");
    rc = PM_ESYS;
    goto fail;
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &in->listen_tag};
  if (epoll_ctl(in->epfd, EPOLL_CTL_ADD, in->lfd, &ev) != 0) {
    rc = PM_ESYS;
    goto fail;
  }
  char ep[96];
  intake_endpoint(in, ep, sizeof ep);
  if (!in->loopback)
    log_warn("intake listens on %s, reachable from other hosts: only the run token protects it", ep);
  struct json_object *jo = jrec_new("intake_listen", clock_real_s());
  jrec_str(jo, "endpoint", ep);
  json_object_object_add(jo, "loopback", json_object_new_boolean(in->loopback));
  jrec_put(in, jo);
  *out = in;
  return 0;
fail:
  intake_close(in);
  return rc;
}

int intake_endpoint(const intake *in, char *buf, size_t cap) {
  if (!in || !buf) return PM_EINVAL;
  int n = in->family == AF_INET6
              ? snprintf(buf, cap, "[%s]:%u", in->host, (unsigned)in->port)
              : snprintf(buf, cap, "%s:%u", in->host, (unsigned)in->port);
  return n < 0 || (size_t)n >= cap ? PM_ETOOBIG : 0;
}

uint16_t intake_port(const intake *in) { return in ? in->port : 0; }

int intake_poll(intake *in, int timeout_ms) {
  if (!in) return PM_EINVAL;
  uint64_t now = clock_mono_ns();
  if (in->n_pending > 0) {
    uint64_t first = UINT64_MAX;
    for (conn *c = in->conns; c; c = c->next)
      if (c->state == CONN_HELLO && c->deadline_mono_ns < first) first = c->deadline_mono_ns;
    int until = first <= now ? 0 : (int)((first - now) / 1000000ull) + 1;
    if (timeout_ms < 0 || until < timeout_ms) timeout_ms = until;
  }
  struct epoll_event evs[INTAKE_EVENTS_MAX];
  int n = epoll_wait(in->epfd, evs, INTAKE_EVENTS_MAX, timeout_ms);
  if (n < 0) {
    if (errno == EINTR) n = 0;
    else return PM_ESYS;
  }
  int frames = 0;
  for (int i = 0; i < n; i++) {
    void *tag = evs[i].data.ptr;
    if (tag == &in->listen_tag) {
      accept_all(in);
      continue;
    }
    if (tag == &in->child_tag) {
      in->child_exited = 1;
      continue;
    }
    conn *c = tag;
    if ((evs[i].events & EPOLLOUT) && c->tx_len > 0 && conn_flush_tx(in, c) != 0)
      continue;
    if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))
      frames += conn_read(in, c);
  }
  if (in->n_pending > 0) expire_hellos(in, clock_mono_ns());
  if (in->jr) journal_flush(in->jr);
  return frames;
}

int intake_drain(intake *in, int grace_ms) {
  if (!in) return PM_EINVAL;
  uint64_t end = clock_mono_ns() + (uint64_t)(grace_ms > 0 ? grace_ms : 0) * 1000000ull;
  while (in->st.open_conns > 0) {
    uint64_t now = clock_mono_ns();
    if (now >= end) break;
    int rc = intake_poll(in, (int)((end - now) / 1000000ull) + 1);
    if (rc < 0) return rc;
  }
  return 0;
}

int intake_run_until(intake *in, int child_pidfd, int timeout_ms) {
  if (!in) return PM_EINVAL;
  in->child_exited = 0;
  if (child_pidfd >= 0) {
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &in->child_tag};
    if (epoll_ctl(in->epfd, EPOLL_CTL_ADD, child_pidfd, &ev) != 0) return PM_ESYS;
  }
  uint64_t end = timeout_ms >= 0 ? clock_mono_ns() + (uint64_t)timeout_ms * 1000000ull
                                 : UINT64_MAX;
  int rc = 0;
  for (;;) {
    int wait = -1;
    if (end != UINT64_MAX) {
      uint64_t now = clock_mono_ns();
      if (now >= end) break;
      wait = (int)((end - now) / 1000000ull) + 1;
    }
    int r = intake_poll(in, wait);
    if (r < 0) {
      rc = r;
      break;
    }
    if (in->child_exited) {
      rc = intake_drain(in, INTAKE_DRAIN_MS);
      if (rc == 0) rc = 1;
      break;
    }
  }
  if (child_pidfd >= 0) epoll_ctl(in->epfd, EPOLL_CTL_DEL, child_pidfd, NULL);
  return rc;
}

int intake_request_stop(intake *in, uint64_t stop_iter) {
  if (!in) return PM_EINVAL;
  in->stop_requested = 1;
  in->stop_iter = stop_iter;
  struct json_object *o = jrec_new("stop_request", clock_real_s());
  jrec_u64(o, "stop_iter", stop_iter);
  jrec_put(in, o);
  wire_msg s = {.type = WIRE_STOP};
  s.u.stop.stop_iter = stop_iter;
  int sent = 0;
  conn *c = in->conns;
  while (c) {
    conn *next = c->next;
    if (c->state == CONN_ACTIVE && conn_send_msg(in, c, &s) == 0) sent++;
    c = next;
  }
  if (in->jr) journal_flush(in->jr);
  return sent;
}

void intake_get_stats(const intake *in, intake_stats *st) {
  if (!st) return;
  if (!in) {
    memset(st, 0, sizeof *st);
    return;
  }
  *st = in->st;
}

void intake_close(intake *in) {
  if (!in) return;
  while (in->conns) {
    conn *c = in->conns;
    in->conns = c->next;
    close(c->fd);
    free(c);
  }
  if (in->lfd >= 0) close(in->lfd);
  if (in->epfd >= 0) close(in->epfd);
  for (size_t i = 0; i < in->n_ranks; i++) rank_free(in->ranks[i]);
  free(in->ranks);
  free(in->rx);
  free(in->checkpoint_root);
  free(in);
}
