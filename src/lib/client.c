/* client.c - libparamount's background thread: the controller connection.
 *
 * It connects (with a short timeout), says HELLO, waits for WELCOME, then
 * drains the ring into frames, sends a HEARTBEAT about once a second and
 * reads STOP frames.  When the controller goes away it reconnects with
 * backoff while events wait in the ring (up to its cap).  All I/O is
 * non-blocking and bounded, so pm_finalize's deadline always holds.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib.h"
#include "paramount.h"

#define CLIENT_CONNECT_TIMEOUT_MS 500
#define CLIENT_WELCOME_TIMEOUT_MS 2000
#define CLIENT_TICK_MS 50 /* how often the ring is drained */
#define CLIENT_HEARTBEAT_NS 1000000000ull
#define CLIENT_BACKOFF_MIN_MS 100
#define CLIENT_BACKOFF_MAX_MS 5000
#define CLIENT_OUT_CAP (64 * 1024)
#define CLIENT_IN_CAP (4 * WIRE_MAX_FRAME)
#define CLIENT_BATCH 256

typedef struct {
  int fd;
  uint8_t out[CLIENT_OUT_CAP];
  size_t out_len, out_off;
  uint64_t out_events; /* ring events encoded in out[] */
  lib_event batch[CLIENT_BATCH]; /* taken off the ring, not yet encoded */
  uint32_t batch_n, batch_i;
  uint8_t in[CLIENT_IN_CAP];
  size_t in_len;
  int warned_down; /* one line per outage, not one per retry */
} client;

static int client_ms_left(uint64_t until_ns) {
  uint64_t now = lib_mono_ns();
  if (now >= until_ns) return 0;
  uint64_t ms = (until_ns - now + 999999) / 1000000;
  return ms > 60000 ? 60000 : (int)ms;
}

/* A deadline that never passes pm_finalize's. */
static uint64_t client_deadline(uint64_t ms) {
  uint64_t d = lib_mono_ns() + ms * 1000000u;
  if (atomic_load(&lib_g.finalizing) && lib_g.deadline_mono_ns < d)
    d = lib_g.deadline_mono_ns;
  return d;
}

static void client_close(client *c) {
  if (c->fd >= 0) {
    atomic_store(&lib_g.sock_fd, -1);
    close(c->fd);
  }
  c->fd = -1;
  if (c->out_events)
    atomic_fetch_add(&lib_g.dropped, c->out_events);
  c->out_len = c->out_off = 0;
  c->out_events = 0;
  c->in_len = 0;
  atomic_store(&lib_g.connected, 0);
}

/* Handles one frame from the controller; -1 when the connection must go. */
static int client_on_frame(const wire_msg *m, int *welcomed) {
  switch (m->type) {
  case WIRE_WELCOME:
    *welcomed = 1;
    return 0;
  case WIRE_STOP:
    atomic_store(&lib_g.stop_iter, m->u.stop.stop_iter);
    atomic_store_explicit(&lib_g.stop_flag, 1, memory_order_release);
    return 0;
  default:
    lib_warn("controller sent an unexpected %s frame; reconnecting",
             wire_type_name(m->type));
    return -1;
  }
}

/* Reads what is available; 0, or -1 when the peer closed or spoke
 * garbage. */
static int client_read(client *c, int *welcomed) {
  for (;;) {
    ssize_t n = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, MSG_DONTWAIT);
    if (n == 0) return -1;
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return -1;
    }
    c->in_len += (size_t)n;
    size_t off = 0;
    for (;;) {
      wire_msg m;
      size_t used = 0;
      const char *why = NULL;
      int rc = wire_decode(c->in + off, c->in_len - off, &m, &used, &why);
      if (rc == PM_EAGAIN) break;
      if (rc != 0) {
        lib_warn("bad frame from the controller (%s); reconnecting", why ? why : "?");
        return -1;
      }
      if (client_on_frame(&m, welcomed) != 0) return -1;
      off += used;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
  }
}

/* Writes what the socket takes now; 0, or -1 on a dead connection. */
static int client_write(client *c) {
  while (c->out_off < c->out_len) {
    ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return -1;
    }
    c->out_off += (size_t)n;
  }
  if (c->out_events) atomic_fetch_add(&lib_g.sent, c->out_events);
  c->out_len = c->out_off = 0;
  c->out_events = 0;
  return 0;
}

static int client_append(client *c, const wire_msg *m) {
  size_t len = 0;
  int rc = wire_encode(m, c->out + c->out_len, sizeof c->out - c->out_len, &len);
  if (rc == 0) c->out_len += len;
  return rc;
}

static void client_event_to_msg(const lib_event *ev, wire_msg *m) {
  memset(m, 0, sizeof *m);
  m->type = ev->type;
  switch (ev->type) {
  case WIRE_INIT_BEGIN:
  case WIRE_INIT_END:
    m->u.mark.t_ns = ev->v[0];
    break;
  case WIRE_ITER:
    m->u.iter.iter = ev->v[0];
    m->u.iter.t_begin_ns = ev->v[1];
    m->u.iter.wall_ns = ev->v[2];
    m->u.iter.compute_ns = ev->v[3];
    m->u.iter.comm_ns = ev->v[4];
    m->u.iter.samples = ev->v[5];
    break;
  case WIRE_EPOCH:
    m->u.epoch.t_ns = ev->v[0];
    m->u.epoch.epoch = ev->v[1];
    m->u.epoch.last_iter = ev->v[2];
    break;
  case WIRE_PHASE:
    m->u.phase.t_ns = ev->v[0];
    m->u.phase.first_iter = ev->v[1];
    m->u.phase.planned_iters = ev->v[2];
    strncpy(m->u.phase.name, ev->str ? ev->str : "", WIRE_NAME_MAX);
    break;
  case WIRE_CHECKPOINT:
    m->u.checkpoint.t_ns = ev->v[0];
    m->u.checkpoint.iter = ev->v[1];
    strncpy(m->u.checkpoint.path, ev->str ? ev->str : "", WIRE_PATH_MAX);
    break;
  }
}

/* Moves events from the ring into out[] while they fit.  Events are taken
 * off the ring a batch at a time (one lock) and wait in c->batch when out[]
 * is full, so none is lost between the two.  Returns how many it encoded. */
static uint32_t client_fill(client *c) {
  uint32_t done = 0;
  for (;;) {
    if (c->batch_i == c->batch_n) {
      c->batch_i = 0;
      c->batch_n = lib_queue_pop(c->batch, CLIENT_BATCH);
      if (c->batch_n == 0) break;
    }
    lib_event *ev = &c->batch[c->batch_i];
    wire_msg m;
    client_event_to_msg(ev, &m);
    int rc = client_append(c, &m);
    if (rc != 0 && c->out_len > 0) break; /* out[] full: next time */
    if (rc == 0)
      c->out_events++;
    else /* NEVER: api.c checks every string against its cap */
      atomic_fetch_add(&lib_g.dropped, 1);
    free(ev->str);
    ev->str = NULL;
    c->batch_i++;
    done++;
  }
  return done;
}

/* Events taken off the ring but never encoded count as dropped. */
static void client_batch_discard(client *c) {
  for (uint32_t i = c->batch_i; i < c->batch_n; i++) {
    free(c->batch[i].str);
    atomic_fetch_add(&lib_g.dropped, 1);
  }
  c->batch_i = c->batch_n = 0;
}

static int client_append_fin(client *c, uint8_t type) {
  wire_msg m;
  memset(&m, 0, sizeof m);
  m.type = type;
  m.u.fin.t_ns = lib_real_ns();
  m.u.fin.dropped = atomic_load(&lib_g.dropped);
  m.u.fin.sent = atomic_load(&lib_g.sent) + c->out_events;
  return client_append(c, &m);
}

/* Non-blocking connect bounded by timeout; the fd or -1 with *err set. */
static int client_dial(const struct addrinfo *ai, uint64_t until_ns, int *err) {
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  ai->ai_protocol);
  if (fd < 0) { *err = errno; return -1; }
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    if (errno != EINPROGRESS) { *err = errno; close(fd); return -1; }
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int r;
    do r = poll(&p, 1, client_ms_left(until_ns));
    while (r < 0 && errno == EINTR);
    if (r <= 0) { *err = r == 0 ? ETIMEDOUT : errno; close(fd); return -1; }
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    if (soerr) { *err = soerr; close(fd); return -1; }
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

/* Connects, says HELLO and waits for WELCOME.  0 or -1 (c->fd == -1). */
static int client_connect(client *c) {
  lib_state *g = &lib_g;
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
  struct addrinfo *res = NULL;
  int gai = getaddrinfo(g->host, g->port, &hints, &res);
  if (gai != 0) {
    if (!c->warned_down)
      lib_warn("cannot resolve controller host \"%s\": %s; will retry", g->host,
               gai_strerror(gai));
    c->warned_down = 1;
    return -1;
  }
  int err = 0;
  uint64_t until = client_deadline(CLIENT_CONNECT_TIMEOUT_MS);
  for (struct addrinfo *ai = res; ai && c->fd < 0; ai = ai->ai_next)
    c->fd = client_dial(ai, until, &err);
  freeaddrinfo(res);
  if (c->fd < 0) {
    if (!c->warned_down)
      lib_warn("cannot reach the controller at %s:%s: %s; will retry", g->host, g->port,
               strerror(err));
    c->warned_down = 1;
    return -1;
  }
  atomic_store(&g->sock_fd, c->fd);

  wire_msg h;
  memset(&h, 0, sizeof h);
  h.type = WIRE_HELLO;
  memcpy(h.u.hello.token, g->token, sizeof h.u.hello.token);
  memcpy(h.u.hello.node, g->node, sizeof h.u.hello.node);
  memcpy(h.u.hello.app, g->app, sizeof h.u.hello.app);
  h.u.hello.rank = g->rank;
  h.u.hello.pid = (uint32_t)getpid();
  c->out_len = c->out_off = 0;
  if (client_append(c, &h) != 0) goto fail;

  int welcomed = 0;
  until = client_deadline(CLIENT_WELCOME_TIMEOUT_MS);
  while (!welcomed) {
    struct pollfd p = {.fd = c->fd,
                       .events = POLLIN | (c->out_off < c->out_len ? POLLOUT : 0)};
    int ms = client_ms_left(until);
    if (ms == 0) {
      if (!c->warned_down) lib_warn("controller did not answer HELLO; will retry");
      c->warned_down = 1;
      goto fail;
    }
    int r = poll(&p, 1, ms);
    if (r < 0 && errno != EINTR) goto fail;
    if (r <= 0) continue;
    if ((p.revents & POLLOUT) && client_write(c) != 0) goto fail;
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      if (client_read(c, &welcomed) != 0) {
        if (!c->warned_down)
          lib_warn("controller closed the connection before WELCOME (token refused?)"
                   "; will retry");
        c->warned_down = 1;
        goto fail;
      }
    }
  }
  if (c->warned_down) lib_warn("connected to the controller at %s:%s", g->host, g->port);
  c->warned_down = 0;
  atomic_store(&g->connected, 1);
  return 0;
fail:
  client_close(c);
  return -1;
}

/* Sleeps until the ring needs draining, pm_finalize nudges, or ms pass. */
static void client_nap(int ms) {
  struct pollfd p = {.fd = lib_g.wake_fd[0], .events = POLLIN};
  if (poll(&p, 1, ms) > 0) {
    char buf[64];
    while (read(lib_g.wake_fd[0], buf, sizeof buf) > 0) {
    }
  }
}

void *client_main(void *arg) {
  (void)arg;
  lib_state *g = &lib_g;
  client *c = calloc(1, sizeof *c);
  if (!c) return NULL; /* events stay queued; pm_finalize counts them */
  c->fd = -1;
  uint64_t backoff_ms = CLIENT_BACKOFF_MIN_MS, next_try_ns = 0, next_hb_ns = 0;
  int tried_after_fin = 0, fin_queued = 0;

  for (;;) {
    uint64_t now = lib_mono_ns();
    int fin = atomic_load(&g->finalizing);
    if (fin && now >= g->deadline_mono_ns) break;

    if (c->fd < 0) {
      /* Finalizing while disconnected: one last attempt, then give up
       * rather than hold the application's exit hostage. */
      if (fin && tried_after_fin) break;
      if (fin || now >= next_try_ns) {
        tried_after_fin = fin;
        if (client_connect(c) == 0) {
          backoff_ms = CLIENT_BACKOFF_MIN_MS;
          next_hb_ns = 0;
          fin_queued = 0; /* a FINALIZE lost with the old connection */
        } else {
          next_try_ns = lib_mono_ns() + backoff_ms * 1000000u;
          backoff_ms = backoff_ms * 2 > CLIENT_BACKOFF_MAX_MS ? CLIENT_BACKOFF_MAX_MS
                                                              : backoff_ms * 2;
          if (!fin) client_nap(client_ms_left(next_try_ns));
          continue;
        }
      } else {
        client_nap(client_ms_left(next_try_ns));
        continue;
      }
    }

    /* Connected: top up the output, then wait for the socket or a tick. */
    uint32_t took = 0;
    if (c->out_off == c->out_len) {
      took = client_fill(c);
      if (fin && c->out_len == 0 && c->batch_i == c->batch_n && !fin_queued) {
        if (client_append_fin(c, WIRE_FINALIZE) == 0) fin_queued = 1;
      }
    }
    now = lib_mono_ns();
    if (!fin_queued && now >= next_hb_ns &&
        sizeof c->out - c->out_len >= WIRE_MAX_FRAME) {
      client_append_fin(c, WIRE_HEARTBEAT);
      next_hb_ns = now + CLIENT_HEARTBEAT_NS;
    }
    if (c->out_off < c->out_len && client_write(c) != 0) {
      client_close(c);
      continue;
    }
    if (fin_queued && c->out_len == 0) break; /* FINALIZE is out: done */

    int pending = c->out_off < c->out_len;
    /* A backlog is drained at once; otherwise the ring waits for a tick,
     * which keeps this thread's wake-ups (and the app's cost) low. */
    int ms = took > 0 && !pending ? 0 : pending || fin ? 10 : CLIENT_TICK_MS;
    if (fin) {
      int left = client_ms_left(g->deadline_mono_ns);
      if (left < ms) ms = left;
    }
    struct pollfd p[2] = {{.fd = c->fd, .events = POLLIN | (pending ? POLLOUT : 0)},
                          {.fd = g->wake_fd[0], .events = POLLIN}};
    int r = poll(p, 2, ms);
    if (r < 0 && errno != EINTR) {
      client_close(c);
      continue;
    }
    if (r <= 0) continue;
    if (p[1].revents & POLLIN) {
      char buf[64];
      while (read(g->wake_fd[0], buf, sizeof buf) > 0) {
      }
    }
    int welcomed = 1;
    if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) && client_read(c, &welcomed) != 0) {
      if (!c->warned_down) lib_warn("lost the controller connection; will reconnect");
      c->warned_down = 1;
      client_close(c);
      continue;
    }
    if ((p[0].revents & POLLOUT) && client_write(c) != 0) client_close(c);
  }
  client_close(c);
  client_batch_discard(c);
  free(c);
  return NULL;
}
