/* api.c - the public calls of libparamount (see include/paramount.h).
 *
 * Everything on the application's path is cheap by construction: two
 * clock reads and, for events, one uncontended mutex around a copy into a
 * preallocated ring.  No call here does I/O except the opt-in MO833 lines
 * and pm_init/pm_finalize, so an absent or dying controller can never slow
 * or stop the application.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib.h"
#include "paramount.h"

lib_state lib_g = {.mu = PTHREAD_MUTEX_INITIALIZER,
                   .wake_fd = {-1, -1},
                   .sock_fd = -1};

uint64_t lib_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t lib_real_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void lib_warn(const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  /* One fprintf so that ranks sharing a terminal do not interleave. */
  fprintf(stderr, "libparamount: %s\n", line);
}

/* ---- the ring ------------------------------------------------------- */

/* Takes ownership of ev->str whatever happens. */
static void lib_queue_push(lib_event *ev) {
  if (!lib_g.ring) { /* no controller configured: nothing to send */
    free(ev->str);
    return;
  }
  int wake = 0;
  pthread_mutex_lock(&lib_g.mu);
  if (lib_g.len == lib_g.cap) {
    pthread_mutex_unlock(&lib_g.mu);
    atomic_fetch_add_explicit(&lib_g.dropped, 1, memory_order_relaxed);
    free(ev->str);
    return;
  }
  uint32_t slot = lib_g.head + lib_g.len;
  if (slot >= lib_g.cap) slot -= lib_g.cap;
  lib_g.ring[slot] = *ev;
  lib_g.len++;
  /* The client thread drains on a timer; nudge it only when the ring is
   * half full, so the common path makes no system call. */
  if (lib_g.len >= lib_g.cap / 2 && !lib_g.wake_sent) {
    lib_g.wake_sent = 1;
    wake = 1;
  }
  pthread_mutex_unlock(&lib_g.mu);
  if (wake && lib_g.wake_fd[1] >= 0) {
    ssize_t r = write(lib_g.wake_fd[1], "w", 1);
    (void)r; /* a full pipe already holds a nudge */
  }
}

uint32_t lib_queue_pop(lib_event *out, uint32_t max) {
  pthread_mutex_lock(&lib_g.mu);
  uint32_t n = lib_g.len < max ? lib_g.len : max;
  for (uint32_t i = 0; i < n; i++) {
    out[i] = lib_g.ring[lib_g.head];
    if (++lib_g.head == lib_g.cap) lib_g.head = 0;
  }
  lib_g.len -= n;
  if (lib_g.len < lib_g.cap / 2) lib_g.wake_sent = 0;
  pthread_mutex_unlock(&lib_g.mu);
  return n;
}

/* Frees what is left in the ring and counts it dropped (pm_finalize). */
static uint64_t lib_queue_discard(void) {
  lib_event batch[64];
  uint64_t total = 0;
  uint32_t n;
  while ((n = lib_queue_pop(batch, 64)) > 0) {
    for (uint32_t i = 0; i < n; i++) free(batch[i].str);
    total += n;
  }
  return total;
}

/* ---- configuration from the environment ----------------------------- */

/* Parses a decimal in [lo, hi]; 0 or -1. */
static int lib_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out) {
  if (!s || !*s) return -1;
  for (const char *p = s; *p; p++)
    if (*p < '0' || *p > '9') return -1;
  errno = 0;
  unsigned long long v = strtoull(s, NULL, 10);
  if (errno || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

/* "HOST:PORT" or "[V6ADDR]:PORT" into host/port; 0 or -1 with *why. */
static int lib_parse_endpoint(const char *ep, char *host, char *port,
                              const char **why) {
  const char *colon;
  size_t hlen;
  if (ep[0] == '[') {
    const char *close = strchr(ep, ']');
    if (!close || close[1] != ':') { *why = "want [IPV6]:PORT"; return -1; }
    colon = close + 1;
    ep++;
    hlen = (size_t)(close - ep);
  } else {
    colon = strrchr(ep, ':');
    if (!colon) { *why = "want HOST:PORT"; return -1; }
    hlen = (size_t)(colon - ep);
    if (memchr(ep, ':', hlen)) { *why = "an IPv6 address needs [brackets]"; return -1; }
  }
  if (hlen == 0) { *why = "empty host"; return -1; }
  if (hlen > LIB_HOST_MAX) { *why = "host longer than 255 bytes"; return -1; }
  uint64_t p;
  if (lib_parse_u64(colon + 1, 1, 65535, &p) != 0) {
    *why = "port is not a number in 1..65535";
    return -1;
  }
  memcpy(host, ep, hlen);
  host[hlen] = '\0';
  snprintf(port, 8, "%u", (unsigned)p);
  return 0;
}

static uint32_t lib_env_rank(void) {
  static const char *const vars[] = {"PARAMOUNT_RANK", "OMPI_COMM_WORLD_RANK",
                                     "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    const char *s = getenv(vars[i]);
    if (!s) continue;
    uint64_t v;
    if (lib_parse_u64(s, 0, UINT32_MAX - 1, &v) == 0) return (uint32_t)v;
    lib_warn("%s=\"%.32s\" is not a rank (a decimal >= 0); ignoring it", vars[i], s);
  }
  return 0;
}

/* Copies s into dst[cap+1], truncating; used for defaults we invent. */
static void lib_copy_trunc(char *dst, size_t cap, const char *s) {
  size_t n = strnlen(s, cap);
  memcpy(dst, s, n);
  dst[n] = '\0';
}

static void lib_config_read(void) {
  lib_state *g = &lib_g;
  const char *s;

  g->has_endpoint = 0;
  if ((s = getenv("PARAMOUNT_ENDPOINT")) && *s) {
    const char *why = NULL;
    if (lib_parse_endpoint(s, g->host, g->port, &why) == 0)
      g->has_endpoint = 1;
    else
      lib_warn("PARAMOUNT_ENDPOINT=\"%.300s\": %s; running without a controller", s, why);
  }

  g->token[0] = '\0';
  if ((s = getenv("PARAMOUNT_TOKEN"))) {
    if (strlen(s) > WIRE_TOKEN_MAX) {
      lib_warn("PARAMOUNT_TOKEN is longer than %d bytes; running without a controller",
               WIRE_TOKEN_MAX);
      g->has_endpoint = 0;
    } else {
      strcpy(g->token, s);
    }
  }

  if ((s = getenv("PARAMOUNT_NODE")) && *s) {
    if (strlen(s) > WIRE_NAME_MAX) {
      lib_warn("PARAMOUNT_NODE is longer than %d bytes; using it truncated", WIRE_NAME_MAX);
    }
    lib_copy_trunc(g->node, WIRE_NAME_MAX, s);
  } else {
    char hn[256] = "";
    if (gethostname(hn, sizeof hn - 1) != 0 || !hn[0]) strcpy(hn, "localhost");
    lib_copy_trunc(g->node, WIRE_NAME_MAX, hn);
  }

  if ((s = getenv("PARAMOUNT_APP")) && *s) {
    if (strlen(s) > WIRE_NAME_MAX)
      lib_warn("PARAMOUNT_APP is longer than %d bytes; using it truncated", WIRE_NAME_MAX);
    lib_copy_trunc(g->app, WIRE_NAME_MAX, s);
  } else {
    extern char *program_invocation_short_name; /* GNU: argv[0] basename */
    lib_copy_trunc(g->app, WIRE_NAME_MAX,
                   program_invocation_short_name && *program_invocation_short_name
                       ? program_invocation_short_name
                       : "app");
  }

  g->rank = lib_env_rank();
  g->mo833 = (s = getenv("PARAMOUNT_MO833")) && strcmp(s, "1") == 0;

  uint64_t v;
  g->cap = LIB_QUEUE_DEFAULT;
  if ((s = getenv("PARAMOUNT_QUEUE"))) {
    if (lib_parse_u64(s, 1, LIB_QUEUE_MAX, &v) == 0)
      g->cap = (uint32_t)v;
    else
      lib_warn("PARAMOUNT_QUEUE=\"%.32s\" is not a count in 1..%u; using %u", s,
               LIB_QUEUE_MAX, LIB_QUEUE_DEFAULT);
  }
  g->flush_ms = LIB_FLUSH_DEFAULT_MS;
  if ((s = getenv("PARAMOUNT_FLUSH_TIMEOUT_MS"))) {
    if (lib_parse_u64(s, 0, 600000, &v) == 0)
      g->flush_ms = (uint32_t)v;
    else
      lib_warn("PARAMOUNT_FLUSH_TIMEOUT_MS=\"%.32s\" is not milliseconds in 0..600000; "
               "using %u", s, LIB_FLUSH_DEFAULT_MS);
  }
}

/* ---- fork safety ---------------------------------------------------- */

/* A forked child has no client thread, shares the parent's socket and may
 * have copied the ring mid-update.  It must never write to the parent's
 * connection, so it forgets everything: its calls return PM_ESTATE until
 * it calls pm_init itself.  The ring lock is held across fork() so the
 * copy it frees is consistent. */
static void lib_atfork_prepare(void) { pthread_mutex_lock(&lib_g.mu); }
static void lib_atfork_parent(void) { pthread_mutex_unlock(&lib_g.mu); }
static void lib_atfork_child(void) {
  lib_state *g = &lib_g;
  pthread_mutex_unlock(&g->mu);
  if (!atomic_load(&g->live)) return;
  int fd = atomic_load(&g->sock_fd);
  if (fd >= 0) close(fd); /* our copy only: close, never shutdown */
  if (g->wake_fd[0] >= 0) close(g->wake_fd[0]);
  if (g->wake_fd[1] >= 0) close(g->wake_fd[1]);
  if (g->ring) {
    for (uint32_t i = 0; i < g->len; i++) free(g->ring[(g->head + i) % g->cap].str);
    free(g->ring);
  }
  memset(g, 0, sizeof *g);
  pthread_mutex_init(&g->mu, NULL);
  g->wake_fd[0] = g->wake_fd[1] = -1;
  atomic_store(&g->sock_fd, -1);
}

static pthread_once_t lib_atfork_once = PTHREAD_ONCE_INIT;
static void lib_atfork_register(void) {
  pthread_atfork(lib_atfork_prepare, lib_atfork_parent, lib_atfork_child);
}

/* ---- lifecycle ------------------------------------------------------ */

static void lib_state_reset(void) {
  lib_state *g = &lib_g;
  g->ring = NULL;
  g->cap = g->head = g->len = 0;
  g->wake_sent = 0;
  atomic_store(&g->dropped, 0);
  atomic_store(&g->sent, 0);
  g->init_ended = g->in_iter = 0;
  g->iter = g->next_iter = g->loop_ns = g->n_iters = 0;
  g->has_thread = 0;
  g->wake_fd[0] = g->wake_fd[1] = -1;
  atomic_store(&g->sock_fd, -1);
  atomic_store(&g->finalizing, 0);
  atomic_store(&g->connected, 0);
  atomic_store(&g->stop_flag, 0);
  atomic_store(&g->stop_iter, 0);
}

int pm_init(void) {
  lib_state *g = &lib_g;
  if (atomic_load(&g->live)) return PM_ESTATE;
  pthread_once(&lib_atfork_once, lib_atfork_register);
  lib_state_reset();
  g->init_begin_mono_ns = lib_mono_ns();
  g->init_begin_real_ns = lib_real_ns();
  lib_config_read();

  if (g->has_endpoint) {
    g->ring = calloc(g->cap, sizeof *g->ring);
    if (!g->ring) {
      lib_warn("cannot allocate a queue of %u events; running without a controller",
               g->cap);
    } else if (pipe2(g->wake_fd, O_CLOEXEC | O_NONBLOCK) != 0) {
      lib_warn("pipe2: %s; running without a controller", strerror(errno));
      g->wake_fd[0] = g->wake_fd[1] = -1;
      free(g->ring);
      g->ring = NULL;
    } else {
      lib_event ev = {.type = WIRE_INIT_BEGIN, .v = {g->init_begin_real_ns}};
      lib_queue_push(&ev);
      /* The thread must not inherit the app's signal handlers' business:
       * block everything in it so signals go to the application threads. */
      sigset_t all, old;
      sigfillset(&all);
      pthread_sigmask(SIG_SETMASK, &all, &old);
      int rc = pthread_create(&g->thread, NULL, client_main, NULL);
      pthread_sigmask(SIG_SETMASK, &old, NULL);
      if (rc != 0) {
        lib_warn("cannot start the reporting thread: %s; running without a controller",
                 strerror(rc));
        lib_queue_discard();
        free(g->ring);
        g->ring = NULL;
        close(g->wake_fd[0]);
        close(g->wake_fd[1]);
        g->wake_fd[0] = g->wake_fd[1] = -1;
      } else {
        g->has_thread = 1;
      }
    }
  }
  atomic_store(&g->live, 1);
  return 0;
}

static int lib_live(void) {
  return atomic_load_explicit(&lib_g.live, memory_order_acquire);
}

int pm_init_end(void) {
  lib_state *g = &lib_g;
  if (!lib_live()) return PM_ESTATE;
  if (g->init_ended) return PM_ESTATE;
  g->init_end_mono_ns = lib_mono_ns();
  g->init_ended = 1;
  lib_event ev = {.type = WIRE_INIT_END, .v = {lib_real_ns()}};
  lib_queue_push(&ev);
  return 0;
}

int pm_iter_begin(uint64_t iter) {
  lib_state *g = &lib_g;
  if (!lib_live()) return PM_ESTATE;
  /* The first PI ends initialisation when the app did not say so. */
  if (!g->init_ended) pm_init_end();
  int rc = g->in_iter ? PM_ESTATE : 0; /* previous one never ended */
  g->iter = iter;
  g->next_iter = iter + 1;
  g->iter_begin_real_ns = lib_real_ns();
  g->iter_begin_mono_ns = lib_mono_ns();
  g->in_iter = 1;
  return rc;
}

/* Seconds to nanoseconds; negative, NaN or infinite means unknown. */
static int lib_secs_to_ns(double s, uint64_t *ns) {
  if (!(s >= 0.0) || isinf(s)) return 0;
  if (s > 1e9) s = 1e9; /* 31 years: a bogus value, keep it finite */
  *ns = (uint64_t)(s * 1e9 + 0.5);
  return 1;
}

int pm_iter_end(double compute_s, double comm_s, uint64_t samples) {
  lib_state *g = &lib_g;
  if (!lib_live()) return PM_ESTATE;
  uint64_t end_mono = lib_mono_ns();
  if (!g->in_iter) return PM_ESTATE;
  g->in_iter = 0;
  uint64_t wall = end_mono - g->iter_begin_mono_ns;
  uint64_t compute = 0, comm = 0;
  int have_compute = lib_secs_to_ns(compute_s, &compute);
  int have_comm = lib_secs_to_ns(comm_s, &comm);
  /* Unknown compute is the wall time less the known communication; unknown
   * communication is reported as 0. */
  if (!have_comm) comm = 0;
  if (!have_compute) compute = comm < wall ? wall - comm : 0;
  g->loop_ns += wall;
  g->n_iters++;
  lib_event ev = {.type = WIRE_ITER,
                  .v = {g->iter, g->iter_begin_real_ns, wall, compute, comm, samples}};
  lib_queue_push(&ev);
  if (g->mo833)
    fprintf(stderr, "[MO833] Paramount Iteration,%u,%llu,%.6f,%.6f\n", g->rank,
            (unsigned long long)g->iter,
            (double)(end_mono - g->init_begin_mono_ns) / 1e9, (double)wall / 1e9);
  return 0;
}

int pm_epoch_end(uint64_t epoch, uint64_t last_iter) {
  if (!lib_live()) return PM_ESTATE;
  lib_event ev = {.type = WIRE_EPOCH, .v = {lib_real_ns(), epoch, last_iter}};
  lib_queue_push(&ev);
  return 0;
}

/* Validates s (cap bytes at most) and queues an event carrying a copy. */
static int lib_push_with_str(lib_event *ev, const char *s, size_t cap) {
  if (!s) return PM_EINVAL;
  if (strnlen(s, cap + 1) > cap) return PM_ETOOBIG;
  if (lib_g.ring) {
    ev->str = strdup(s);
    if (!ev->str) return PM_ENOMEM;
  }
  lib_queue_push(ev);
  return 0;
}

int pm_phase(const char *name, uint64_t first_iter, uint64_t planned_iters) {
  if (!lib_live()) return PM_ESTATE;
  if (name && !*name) return PM_EINVAL;
  lib_event ev = {.type = WIRE_PHASE, .v = {lib_real_ns(), first_iter, planned_iters}};
  return lib_push_with_str(&ev, name, WIRE_NAME_MAX);
}

int pm_checkpoint(const char *path, uint64_t iter) {
  if (!lib_live()) return PM_ESTATE;
  if (path && !*path) return PM_EINVAL;
  lib_event ev = {.type = WIRE_CHECKPOINT, .v = {lib_real_ns(), iter}};
  return lib_push_with_str(&ev, path, WIRE_PATH_MAX);
}

static void lib_mo833_summary(uint64_t end_mono) {
  lib_state *g = &lib_g;
  double total = (double)(end_mono - g->init_begin_mono_ns) / 1e9;
  double init = g->init_ended
                    ? (double)(g->init_end_mono_ns - g->init_begin_mono_ns) / 1e9
                    : total;
  double loop = (double)g->loop_ns / 1e9;
  double avg = g->n_iters ? loop / (double)g->n_iters : 0.0;
  /* beta: how much of the run is not paramount iterations, relative to the
   * iterations; undefined (printed as 0) when no iteration ran. */
  double beta = loop > 0 ? (total - loop) / loop : 0.0;
  fprintf(stderr, "[MO833] Init time,%u,%.6f\n", g->rank, init);
  fprintf(stderr, "[MO833] PI avg,%u,%.6f\n", g->rank, avg);
  fprintf(stderr, "[MO833] Beta,%u,%.6f\n", g->rank, beta);
  fprintf(stderr, "[MO833] Total time,%u,%.6f\n", g->rank, total);
}

int pm_finalize(void) {
  lib_state *g = &lib_g;
  if (!lib_live()) return 0;
  uint64_t end_mono = lib_mono_ns();
  int rc = 0;
  if (g->has_thread) {
    g->deadline_mono_ns = end_mono + (uint64_t)g->flush_ms * 1000000u;
    atomic_store(&g->finalizing, 1);
    ssize_t w = write(g->wake_fd[1], "f", 1);
    (void)w;
    /* The thread honours the deadline itself; the extra second covers a
     * connect or name lookup in flight.  If it is still stuck after that
     * we leave it (and its state) alone rather than free under it. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t wait_ns = (uint64_t)g->flush_ms * 1000000u + 1000000000u;
    ts.tv_sec += (time_t)(wait_ns / 1000000000u);
    ts.tv_nsec += (long)(wait_ns % 1000000000u);
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    if (pthread_timedjoin_np(g->thread, NULL, &ts) != 0) {
      lib_warn("reporting thread did not stop in time; abandoning it");
      atomic_store(&g->live, 0);
      return PM_ETIMEDOUT;
    }
    g->has_thread = 0;
  }
  if (g->ring) {
    atomic_fetch_add(&g->dropped, lib_queue_discard());
    free(g->ring);
    g->ring = NULL;
  }
  if (g->wake_fd[0] >= 0) close(g->wake_fd[0]);
  if (g->wake_fd[1] >= 0) close(g->wake_fd[1]);
  g->wake_fd[0] = g->wake_fd[1] = -1;
  if (g->mo833) lib_mo833_summary(end_mono);
  uint64_t dropped = atomic_load(&g->dropped);
  if (dropped)
    lib_warn("rank %u dropped %llu events (queue full or controller unreachable)",
             g->rank, (unsigned long long)dropped);
  atomic_store(&g->connected, 0);
  atomic_store(&g->live, 0);
  return rc;
}

/* ---- control and introspection ------------------------------------- */

int pm_stop_requested(uint64_t *stop_iter) {
  if (!lib_live()) return 0;
  if (!atomic_load_explicit(&lib_g.stop_flag, memory_order_acquire)) return 0;
  if (stop_iter) *stop_iter = atomic_load(&lib_g.stop_iter);
  return 1;
}

uint64_t pm_dropped_events(void) {
  return atomic_load_explicit(&lib_g.dropped, memory_order_relaxed);
}

int pm_connected(void) {
  return lib_live() && atomic_load_explicit(&lib_g.connected, memory_order_relaxed);
}
