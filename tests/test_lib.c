/* test_lib.c - libparamount against a real controller-side socket.
 *
 * A tiny server (a thread, or a forked process when the test must kill it)
 * listens on 127.0.0.1, decodes frames with wire_decode and records them;
 * the cases check what the library sends, that it survives a missing or
 * dying controller, the STOP path, exact drop counting, the PI-HPC-Bench
 * entry points (C and Fortran programs run as children) and MO833 lines.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>

#include "common/wire.h"
#include "paramount.h"
#include "test.h"

/* ---- helpers ---------------------------------------------------------- */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int listen_any(uint16_t *port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT(fd >= 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  ASSERT_EQ_INT(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  ASSERT_EQ_INT(listen(fd, 8), 0);
  socklen_t sl = sizeof a;
  getsockname(fd, (struct sockaddr *)&a, &sl);
  *port = ntohs(a.sin_port);
  return fd;
}

static void set_endpoint(uint16_t port) {
  char ep[64];
  snprintf(ep, sizeof ep, "127.0.0.1:%u", port);
  setenv("PARAMOUNT_ENDPOINT", ep, 1);
  setenv("PARAMOUNT_TOKEN", "tok-123", 1);
  setenv("PARAMOUNT_NODE", "node-a", 1);
  setenv("PARAMOUNT_APP", "testapp", 1);
  setenv("PARAMOUNT_RANK", "3", 1);
}

static void send_frame(int fd, const wire_msg *m) {
  uint8_t buf[WIRE_MAX_FRAME];
  size_t len = 0;
  ASSERT_EQ_INT(wire_encode(m, buf, sizeof buf, &len), 0);
  ASSERT_EQ_INT(send(fd, buf, len, MSG_NOSIGNAL), (long long)len);
}

/* Redirects stderr into a temporary file until capture_end, which returns
 * its content (malloc'd). */
typedef struct {
  int saved, fd;
} capture;

static void capture_begin(capture *c) {
  char path[] = "/tmp/pm_test_lib_XXXXXX";
  c->fd = mkstemp(path);
  ASSERT(c->fd >= 0);
  unlink(path);
  fflush(stderr);
  c->saved = dup(2);
  dup2(c->fd, 2);
}

static char *capture_end(capture *c) {
  fflush(stderr);
  dup2(c->saved, 2);
  close(c->saved);
  off_t n = lseek(c->fd, 0, SEEK_END);
  char *s = calloc(1, (size_t)n + 1);
  ASSERT(pread(c->fd, s, (size_t)n, 0) == n);
  close(c->fd);
  return s;
}

/* ---- the test controller --------------------------------------------- */

#define SRV_MAX 4096
static wire_msg srv_msgs[SRV_MAX]; /* one server per case (process) */
typedef struct {
  int lfd;
  uint16_t port;
  pthread_t th;
  pthread_mutex_t mu;
  wire_msg *msgs;
  size_t n;
  int conns;            /* connections accepted */
  int hold_welcome;     /* wait for release before WELCOME */
  int released;
  int stop_after_hello; /* send STOP(stop_iter) right after WELCOME */
  uint64_t stop_iter;
  size_t close_after;   /* close the first connection after N frames */
  int quit;
} srv;

static void srv_add(srv *s, const wire_msg *m) {
  pthread_mutex_lock(&s->mu);
  if (s->n < SRV_MAX) s->msgs[s->n++] = *m;
  pthread_mutex_unlock(&s->mu);
}

/* Serves one connection until it closes; returns 1 to accept another. */
static int srv_serve(srv *s, int fd) {
  uint8_t buf[4 * WIRE_MAX_FRAME];
  size_t have = 0, frames = 0;
  for (;;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, 50);
    if (__atomic_load_n(&s->quit, __ATOMIC_SEQ_CST)) return 0;
    if (r <= 0) continue;
    ssize_t k = recv(fd, buf + have, sizeof buf - have, 0);
    if (k <= 0) return 1;
    have += (size_t)k;
    size_t off = 0;
    for (;;) {
      wire_msg m;
      size_t used;
      const char *why;
      int rc = wire_decode(buf + off, have - off, &m, &used, &why);
      if (rc == PM_EAGAIN) break;
      if (rc != 0) TEST_FAIL_("server: bad frame from the library: %s", why);
      off += used;
      srv_add(s, &m);
      frames++;
      if (m.type == WIRE_HELLO) {
        while (s->hold_welcome && !__atomic_load_n(&s->released, __ATOMIC_SEQ_CST))
          sleep_ms(1);
        wire_msg w = {.type = WIRE_WELCOME};
        send_frame(fd, &w);
        if (s->stop_after_hello) {
          wire_msg st = {.type = WIRE_STOP};
          st.u.stop.stop_iter = s->stop_iter;
          send_frame(fd, &st);
        }
      }
      if (s->close_after && frames == s->close_after && s->conns == 1) return 1;
    }
    memmove(buf, buf + off, have - off);
    have -= off;
  }
}

static void *srv_main(void *arg) {
  srv *s = arg;
  while (!__atomic_load_n(&s->quit, __ATOMIC_SEQ_CST)) {
    struct pollfd p = {.fd = s->lfd, .events = POLLIN};
    if (poll(&p, 1, 50) <= 0) continue;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0) continue;
    s->conns++;
    int again = srv_serve(s, fd);
    close(fd);
    if (!again) break;
  }
  return NULL;
}

static void srv_start(srv *s) {
  s->lfd = listen_any(&s->port);
  s->msgs = srv_msgs;
  pthread_mutex_init(&s->mu, NULL);
  ASSERT_EQ_INT(pthread_create(&s->th, NULL, srv_main, s), 0);
  set_endpoint(s->port);
}

static void srv_stop(srv *s) {
  __atomic_store_n(&s->quit, 1, __ATOMIC_SEQ_CST);
  pthread_join(s->th, NULL);
  close(s->lfd);
}

static size_t srv_count(srv *s, int type) {
  pthread_mutex_lock(&s->mu);
  size_t k = 0;
  for (size_t i = 0; i < s->n; i++) k += s->msgs[i].type == type;
  pthread_mutex_unlock(&s->mu);
  return k;
}

/* Waits until `count` frames of `type` arrived; fails after timeout_ms. */
static void srv_wait(srv *s, int type, size_t count, int timeout_ms) {
  uint64_t until = now_ns() + (uint64_t)timeout_ms * 1000000u;
  while (srv_count(s, type) < count) {
    if (now_ns() > until)
      TEST_FAIL_("waited %d ms for %zu %s frames, got %zu", timeout_ms, count,
                 wire_type_name(type), srv_count(s, type));
    sleep_ms(5);
  }
}

/* The i-th frame, skipping HEARTBEATs (which come at any time). */
static wire_msg srv_nth(srv *s, size_t i) {
  pthread_mutex_lock(&s->mu);
  wire_msg out = {0};
  for (size_t j = 0; j < s->n; j++) {
    if (s->msgs[j].type == WIRE_HEARTBEAT) continue;
    if (i-- == 0) { out = s->msgs[j]; break; }
  }
  pthread_mutex_unlock(&s->mu);
  return out;
}

static void busy_ms(int ms) {
  uint64_t until = now_ns() + (uint64_t)ms * 1000000u;
  while (now_ns() < until) {
  }
}

/* ---- cases ------------------------------------------------------------- */

TEST(events_arrive_in_order_with_their_fields) {
  srv s = {0};
  srv_start(&s);
  ASSERT_EQ_INT(pm_init(), 0);
  busy_ms(3);
  ASSERT_EQ_INT(pm_init_end(), 0);
  ASSERT_EQ_INT(pm_phase("warmup", 0, 10), 0);
  for (uint64_t i = 0; i < 10; i++) {
    ASSERT_EQ_INT(pm_iter_begin(i), 0);
    busy_ms(2);
    ASSERT_EQ_INT(pm_iter_end(0.0015 + (double)i * 1e-6, 0.0004, 32 + i), 0);
  }
  ASSERT_EQ_INT(pm_epoch_end(0, 9), 0);
  ASSERT_EQ_INT(pm_checkpoint("/tmp/ck/iter-9.bin", 9), 0);
  ASSERT_EQ_INT(pm_finalize(), 0);
  srv_wait(&s, WIRE_FINALIZE, 1, 3000);
  srv_stop(&s);

  wire_msg m = srv_nth(&s, 0);
  ASSERT_EQ_INT(m.type, WIRE_HELLO);
  ASSERT_STREQ(m.u.hello.token, "tok-123");
  ASSERT_STREQ(m.u.hello.node, "node-a");
  ASSERT_STREQ(m.u.hello.app, "testapp");
  ASSERT_EQ_INT(m.u.hello.rank, 3);
  ASSERT_EQ_INT(m.u.hello.pid, getpid());
  wire_msg ib = srv_nth(&s, 1), ie = srv_nth(&s, 2);
  ASSERT_EQ_INT(ib.type, WIRE_INIT_BEGIN);
  ASSERT_EQ_INT(ie.type, WIRE_INIT_END);
  ASSERT(ie.u.mark.t_ns >= ib.u.mark.t_ns + 3000000u);
  m = srv_nth(&s, 3);
  ASSERT_EQ_INT(m.type, WIRE_PHASE);
  ASSERT_STREQ(m.u.phase.name, "warmup");
  ASSERT_EQ_U64(m.u.phase.planned_iters, 10);
  uint64_t prev_begin = 0;
  for (uint64_t i = 0; i < 10; i++) {
    m = srv_nth(&s, 4 + i);
    ASSERT_EQ_INT(m.type, WIRE_ITER);
    ASSERT_EQ_U64(m.u.iter.iter, i);
    ASSERT_EQ_U64(m.u.iter.compute_ns, 1500000 + i * 1000);
    ASSERT_EQ_U64(m.u.iter.comm_ns, 400000);
    ASSERT_EQ_U64(m.u.iter.samples, 32 + i);
    ASSERT(m.u.iter.wall_ns >= 2000000);
    ASSERT(m.u.iter.t_begin_ns > prev_begin);
    prev_begin = m.u.iter.t_begin_ns;
  }
  m = srv_nth(&s, 14);
  ASSERT_EQ_INT(m.type, WIRE_EPOCH);
  ASSERT_EQ_U64(m.u.epoch.last_iter, 9);
  m = srv_nth(&s, 15);
  ASSERT_EQ_INT(m.type, WIRE_CHECKPOINT);
  ASSERT_STREQ(m.u.checkpoint.path, "/tmp/ck/iter-9.bin");
  ASSERT_EQ_U64(m.u.checkpoint.iter, 9);
  m = srv_nth(&s, 16);
  ASSERT_EQ_INT(m.type, WIRE_FINALIZE);
  ASSERT_EQ_U64(m.u.fin.dropped, 0);
  ASSERT_EQ_U64(m.u.fin.sent, 15); /* every event but HELLO/FINALIZE */
  ASSERT_EQ_U64(pm_dropped_events(), 0);
}

TEST(unknown_compute_or_comm_is_derived_from_wall_time) {
  srv s = {0};
  srv_start(&s);
  ASSERT_EQ_INT(pm_init(), 0);
  pm_iter_begin(0);
  busy_ms(4);
  pm_iter_end(-1.0, 0.001, 7); /* compute = wall - comm */
  pm_iter_begin(1);
  busy_ms(2);
  pm_iter_end(-1.0, -1.0, 0); /* all compute */
  pm_iter_begin(2);
  pm_iter_end(0.5, -3.0, 0); /* comm unknown: 0, compute kept */
  pm_finalize();
  srv_wait(&s, WIRE_FINALIZE, 1, 3000);
  srv_stop(&s);
  wire_msg a = srv_nth(&s, 3), b = srv_nth(&s, 4), c = srv_nth(&s, 5);
  ASSERT_EQ_INT(a.type, WIRE_ITER);
  ASSERT_EQ_U64(a.u.iter.comm_ns, 1000000);
  ASSERT_EQ_U64(a.u.iter.compute_ns + a.u.iter.comm_ns, a.u.iter.wall_ns);
  ASSERT_EQ_U64(b.u.iter.compute_ns, b.u.iter.wall_ns);
  ASSERT_EQ_U64(b.u.iter.comm_ns, 0);
  ASSERT_EQ_U64(c.u.iter.compute_ns, 500000000);
  ASSERT_EQ_U64(c.u.iter.comm_ns, 0);
}

/* Average cost of one begin/end pair over n pairs, in ns. */
static double pair_cost_ns(int n) {
  uint64_t t0 = now_ns();
  for (int i = 0; i < n; i++) {
    if (pm_iter_begin((uint64_t)i) != 0) TEST_FAIL_("pm_iter_begin failed");
    if (pm_iter_end(-1, -1, 1) != 0) TEST_FAIL_("pm_iter_end failed");
  }
  return (double)(now_ns() - t0) / n;
}

TEST(no_controller_calls_succeed_and_stay_cheap) {
  unsetenv("PARAMOUNT_ENDPOINT");
  ASSERT_EQ_INT(pm_init(), 0);
  ASSERT_EQ_INT(pm_connected(), 0);
  /* Generous bound: this is a guard against blocking, not a benchmark
   * (bench_instrument measures the real figure). */
  ASSERT_OP_DBL(pair_cost_ns(100000), <, 20000.0);
  ASSERT_EQ_INT(pm_checkpoint("/x", 1), 0);
  uint64_t it;
  ASSERT_EQ_INT(pm_stop_requested(&it), 0);
  ASSERT_EQ_INT(pm_finalize(), 0);
  ASSERT_EQ_U64(pm_dropped_events(), 0); /* nowhere to send is not a drop */
}

TEST(unreachable_controller_costs_nothing_and_finalize_is_bounded) {
  uint16_t port;
  int fd = listen_any(&port);
  close(fd); /* nothing listens there now: connection refused */
  set_endpoint(port);
  setenv("PARAMOUNT_QUEUE", "1000", 1);
  capture cap;
  capture_begin(&cap);
  ASSERT_EQ_INT(pm_init(), 0);
  double ns = pair_cost_ns(5000);
  ASSERT_EQ_INT(pm_connected(), 0);
  uint64_t t0 = now_ns();
  ASSERT_EQ_INT(pm_finalize(), 0);
  double fin_s = (double)(now_ns() - t0) / 1e9;
  char *err = capture_end(&cap);
  ASSERT_OP_DBL(ns, <, 20000.0);
  ASSERT_OP_DBL(fin_s, <, 2.5);
  /* INIT_BEGIN + INIT_END + 5000 ITER: 1000 queued, the rest dropped at
   * once, the queued ones at finalize. */
  ASSERT_EQ_U64(pm_dropped_events(), 5002);
  ASSERT_CONTAINS(err, "cannot reach the controller");
  ASSERT_CONTAINS(err, "dropped 5002 events");
  free(err);
}

TEST(queue_overflow_is_counted_exactly) {
  srv s = {.hold_welcome = 1};
  srv_start(&s);
  setenv("PARAMOUNT_QUEUE", "8", 1);
  ASSERT_EQ_INT(pm_init(), 0); /* INIT_BEGIN: 1 queued */
  for (uint64_t i = 0; i < 20; i++) { /* INIT_END + 20 ITER: 6 fit */
    pm_iter_begin(i);
    pm_iter_end(-1, -1, 1);
  }
  ASSERT_EQ_U64(pm_dropped_events(), 14);
  __atomic_store_n(&s.released, 1, __ATOMIC_SEQ_CST);
  srv_wait(&s, WIRE_ITER, 6, 3000);
  ASSERT_EQ_INT(pm_finalize(), 0);
  srv_wait(&s, WIRE_FINALIZE, 1, 3000);
  srv_stop(&s);
  ASSERT_EQ_INT(srv_count(&s, WIRE_ITER), 6);
  for (uint64_t i = 0; i < 6; i++) ASSERT_EQ_U64(srv_nth(&s, 3 + i).u.iter.iter, i);
  wire_msg f = srv_nth(&s, 9);
  ASSERT_EQ_INT(f.type, WIRE_FINALIZE);
  ASSERT_EQ_U64(f.u.fin.dropped, 14);
  ASSERT_EQ_U64(f.u.fin.sent, 8);
  ASSERT_EQ_U64(pm_dropped_events(), 14);
}

TEST(stop_frame_is_reported) {
  srv s = {.stop_after_hello = 1, .stop_iter = 42};
  srv_start(&s);
  ASSERT_EQ_INT(pm_init(), 0);
  uint64_t it = 0;
  ASSERT_EQ_INT(pm_stop_requested(&it), 0);
  uint64_t until = now_ns() + 3000000000u;
  while (!pm_stop_requested(&it) && now_ns() < until) sleep_ms(2);
  ASSERT_EQ_INT(pm_stop_requested(&it), 1);
  ASSERT_EQ_U64(it, 42);
  ASSERT_EQ_INT(pm_connected(), 1);
  ASSERT_EQ_INT(pm_finalize(), 0);
  srv_stop(&s);
}

/* A controller in another process that we kill mid-run. */
TEST(controller_killed_mid_run_app_survives) {
  uint16_t port;
  int lfd = listen_any(&port);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    int fd = accept(lfd, NULL, NULL);
    uint8_t buf[WIRE_MAX_FRAME];
    (void)!recv(fd, buf, sizeof buf, 0); /* HELLO */
    wire_msg w = {.type = WIRE_WELCOME};
    send_frame(fd, &w);
    for (;;) (void)!recv(fd, buf, sizeof buf, 0); /* drain until killed */
  }
  close(lfd);
  set_endpoint(port);
  setenv("PARAMOUNT_QUEUE", "64", 1);
  signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would kill us: it must not come */
  capture cap;
  capture_begin(&cap);
  ASSERT_EQ_INT(pm_init(), 0);
  uint64_t until = now_ns() + 3000000000u;
  while (!pm_connected() && now_ns() < until) sleep_ms(2);
  ASSERT_EQ_INT(pm_connected(), 1);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  for (uint64_t i = 0; i < 400; i++) { /* ~0.8 s of iterations */
    ASSERT_EQ_INT(pm_iter_begin(i), 0);
    busy_ms(2);
    ASSERT_EQ_INT(pm_iter_end(-1, -1, 1), 0);
  }
  ASSERT_EQ_INT(pm_connected(), 0);
  ASSERT_EQ_INT(pm_finalize(), 0);
  char *err = capture_end(&cap);
  ASSERT(pm_dropped_events() > 0);
  ASSERT_CONTAINS(err, "lost the controller connection");
  ASSERT_CONTAINS(err, "dropped");
  free(err);
}

TEST(reconnects_after_the_controller_drops_the_connection) {
  srv s = {.close_after = 3}; /* HELLO, INIT_BEGIN, INIT_END, then close */
  srv_start(&s);
  ASSERT_EQ_INT(pm_init(), 0);
  ASSERT_EQ_INT(pm_init_end(), 0);
  srv_wait(&s, WIRE_INIT_END, 1, 3000);
  sleep_ms(100); /* let the library see the close */
  uint64_t until = now_ns() + 3000000000u;
  while (srv_count(&s, WIRE_HELLO) < 2 && now_ns() < until) sleep_ms(10);
  ASSERT_EQ_INT(srv_count(&s, WIRE_HELLO), 2);
  for (uint64_t i = 0; i < 5; i++) {
    pm_iter_begin(i);
    pm_iter_end(-1, -1, 1);
  }
  ASSERT_EQ_INT(pm_finalize(), 0);
  srv_wait(&s, WIRE_FINALIZE, 1, 3000);
  srv_stop(&s);
  ASSERT_EQ_INT(srv_count(&s, WIRE_ITER), 5);
  ASSERT_EQ_INT(s.conns, 2);
}

TEST(state_errors_and_bad_arguments) {
  unsetenv("PARAMOUNT_ENDPOINT");
  uint64_t it = 7;
  ASSERT_EQ_INT(pm_iter_begin(0), PM_ESTATE);
  ASSERT_EQ_INT(pm_iter_end(1, 1, 1), PM_ESTATE);
  ASSERT_EQ_INT(pm_init_end(), PM_ESTATE);
  ASSERT_EQ_INT(pm_epoch_end(0, 0), PM_ESTATE);
  ASSERT_EQ_INT(pm_phase("x", 0, 0), PM_ESTATE);
  ASSERT_EQ_INT(pm_checkpoint("x", 0), PM_ESTATE);
  ASSERT_EQ_INT(pm_stop_requested(&it), 0);
  ASSERT_EQ_INT(pm_finalize(), 0); /* no-op */
  begin_timestep_();               /* before init: ignored, no crash */
  end_timestep_();

  ASSERT_EQ_INT(pm_init(), 0);
  ASSERT_EQ_INT(pm_init(), PM_ESTATE);
  ASSERT_EQ_INT(pm_iter_end(1, 1, 1), PM_ESTATE); /* no begin */
  ASSERT_EQ_INT(pm_init_end(), 0);
  ASSERT_EQ_INT(pm_init_end(), PM_ESTATE);
  ASSERT_EQ_INT(pm_iter_begin(0), 0);
  ASSERT_EQ_INT(pm_iter_begin(1), PM_ESTATE); /* 0 never ended; 1 starts */
  ASSERT_EQ_INT(pm_iter_end(1, 1, 1), 0);
  ASSERT_EQ_INT(pm_phase(NULL, 0, 0), PM_EINVAL);
  ASSERT_EQ_INT(pm_phase("", 0, 0), PM_EINVAL);
  char big[1100];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  big[64] = '\0';
  ASSERT_EQ_INT(pm_phase(big, 0, 0), PM_ETOOBIG);
  big[63] = '\0';
  ASSERT_EQ_INT(pm_phase(big, 0, 0), 0);
  ASSERT_EQ_INT(pm_checkpoint(NULL, 0), PM_EINVAL);
  memset(big, 'a', sizeof big - 1);
  ASSERT_EQ_INT(pm_checkpoint(big, 0), PM_ETOOBIG);
  ASSERT_EQ_INT(pm_finalize(), 0);
  ASSERT_EQ_INT(pm_iter_begin(0), PM_ESTATE);
  ASSERT_EQ_INT(pm_init(), 0); /* a new session after finalize */
  ASSERT_EQ_INT(pm_finalize(), 0);
  ASSERT_STREQ(pm_errname(PM_ESTATE), "PM_ESTATE");
}

TEST(bad_environment_is_named_and_survived) {
  static const struct {
    const char *var, *val, *expect;
  } cases[] = {
      {"PARAMOUNT_ENDPOINT", "no-port-here", "PARAMOUNT_ENDPOINT=\"no-port-here\": want HOST:PORT"},
      {"PARAMOUNT_ENDPOINT", "host:99999", "port is not a number in 1..65535"},
      {"PARAMOUNT_ENDPOINT", ":80", "empty host"},
      {"PARAMOUNT_ENDPOINT", "::1:80", "IPv6 address needs [brackets]"},
      {"PARAMOUNT_ENDPOINT", "[::1]80", "want [IPV6]:PORT"},
      {"PARAMOUNT_QUEUE", "many", "PARAMOUNT_QUEUE=\"many\" is not a count"},
      {"PARAMOUNT_QUEUE", "0", "PARAMOUNT_QUEUE=\"0\" is not a count"},
      {"PARAMOUNT_RANK", "-2", "PARAMOUNT_RANK=\"-2\" is not a rank"},
      {"PARAMOUNT_FLUSH_TIMEOUT_MS", "1s", "PARAMOUNT_FLUSH_TIMEOUT_MS=\"1s\""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    unsetenv("PARAMOUNT_ENDPOINT");
    setenv(cases[i].var, cases[i].val, 1);
    capture cap;
    capture_begin(&cap);
    int rc = pm_init();
    int conn = pm_connected();
    pm_iter_begin(0);
    int rc2 = pm_iter_end(-1, -1, 0);
    pm_finalize();
    char *err = capture_end(&cap);
    ASSERT_EQ_INT(rc, 0);
    ASSERT_EQ_INT(rc2, 0);
    ASSERT_EQ_INT(conn, 0);
    ASSERT_CONTAINS(err, cases[i].expect);
    free(err);
    unsetenv(cases[i].var);
  }
}

TEST(rank_comes_from_the_mpi_launcher) {
  srv s = {0};
  srv_start(&s);
  unsetenv("PARAMOUNT_RANK");
  setenv("PMIX_RANK", "5", 1);
  setenv("OMPI_COMM_WORLD_RANK", "9", 1); /* Open MPI's own wins over PMIx */
  ASSERT_EQ_INT(pm_init(), 0);
  ASSERT_EQ_INT(pm_finalize(), 0);
  srv_wait(&s, WIRE_FINALIZE, 1, 3000);
  srv_stop(&s);
  ASSERT_EQ_INT(srv_nth(&s, 0).u.hello.rank, 9);
}

TEST(fork_child_never_touches_the_parent_connection) {
  srv s = {0};
  srv_start(&s);
  ASSERT_EQ_INT(pm_init(), 0);
  uint64_t until = now_ns() + 3000000000u;
  while (!pm_connected() && now_ns() < until) sleep_ms(2);
  ASSERT_EQ_INT(pm_connected(), 1);
  pid_t pid = fork();
  if (pid == 0) {
    /* The child has no reporting thread: it must be told so, not hang. */
    int bad = pm_iter_begin(0) != PM_ESTATE || pm_connected() != 0 ||
              pm_finalize() != 0;
    _exit(bad ? 1 : 0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  ASSERT(WIFEXITED(st));
  ASSERT_EQ_INT(WEXITSTATUS(st), 0);
  for (uint64_t i = 0; i < 3; i++) {
    pm_iter_begin(i);
    pm_iter_end(-1, -1, 1);
  }
  ASSERT_EQ_INT(pm_connected(), 1);
  ASSERT_EQ_INT(pm_finalize(), 0);
  srv_wait(&s, WIRE_FINALIZE, 1, 3000);
  srv_stop(&s);
  ASSERT_EQ_INT(srv_count(&s, WIRE_ITER), 3);
}

TEST(pihpc_entry_points_from_c) {
  srv s = {0};
  srv_start(&s);
  init_timestep_();
  busy_ms(2);
  for (int i = 0; i < 3; i++) {
    begin_timestep_();
    busy_ms(1);
    end_timestep_();
  }
  exit_timestep_();
  srv_wait(&s, WIRE_FINALIZE, 1, 3000);
  srv_stop(&s);
  ASSERT_EQ_INT(srv_nth(&s, 1).type, WIRE_INIT_BEGIN);
  ASSERT_EQ_INT(srv_nth(&s, 2).type, WIRE_INIT_END);
  for (uint64_t i = 0; i < 3; i++) {
    wire_msg m = srv_nth(&s, 3 + i);
    ASSERT_EQ_INT(m.type, WIRE_ITER);
    ASSERT_EQ_U64(m.u.iter.iter, i);
    ASSERT_EQ_U64(m.u.iter.compute_ns, m.u.iter.wall_ns);
    ASSERT_EQ_U64(m.u.iter.comm_ns, 0);
  }
}

/* Runs an instrumented program as a child against a test server. */
static void run_pihpc_program(const char *exe, size_t iters) {
  srv s = {0};
  srv_start(&s);
  setenv("PARAMOUNT_MO833", "1", 1);
  capture cap;
  capture_begin(&cap);
  pid_t pid = fork();
  if (pid == 0) {
    execl(exe, exe, (char *)NULL);
    _exit(127);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  char *err = capture_end(&cap);
  ASSERT(WIFEXITED(st));
  ASSERT_EQ_INT(WEXITSTATUS(st), 0);
  srv_wait(&s, WIRE_FINALIZE, 1, 3000);
  srv_stop(&s);
  ASSERT_EQ_INT(srv_nth(&s, 0).u.hello.pid, pid);
  ASSERT_EQ_INT(srv_count(&s, WIRE_INIT_END), 1);
  ASSERT_EQ_INT(srv_count(&s, WIRE_ITER), iters);
  for (uint64_t i = 0; i < iters; i++) {
    wire_msg m = srv_nth(&s, 3 + i);
    ASSERT_EQ_U64(m.u.iter.iter, i);
    ASSERT(m.u.iter.wall_ns > 0);
  }
  ASSERT_CONTAINS(err, "[MO833] Paramount Iteration,3,0,");
  ASSERT_CONTAINS(err, "[MO833] Total time,3,");
  free(err);
}

TEST(pihpc_c_program_relinks_unchanged) {
#ifdef PM_PIHPC_C
  run_pihpc_program(PM_PIHPC_C, 5);
#else
  TEST_FAIL_("pihpc_c was not built");
#endif
}

TEST(pihpc_c_program_links_the_static_library) {
#ifdef PM_PIHPC_C_STATIC
  run_pihpc_program(PM_PIHPC_C_STATIC, 5);
#else
  TEST_FAIL_("pihpc_c_static was not built");
#endif
}

TEST(pihpc_fortran_program_relinks_unchanged) {
#ifdef PM_PIHPC_FORTRAN
  run_pihpc_program(PM_PIHPC_FORTRAN, 4);
#else
  printf("skip: no Fortran compiler at configure time\n");
#endif
}

TEST(mo833_lines_have_the_documented_format) {
  unsetenv("PARAMOUNT_ENDPOINT"); /* the lines need no controller */
  setenv("PARAMOUNT_MO833", "1", 1);
  setenv("PARAMOUNT_RANK", "2", 1);
  capture cap;
  capture_begin(&cap);
  ASSERT_EQ_INT(pm_init(), 0);
  busy_ms(20); /* init */
  for (uint64_t i = 0; i < 3; i++) {
    pm_iter_begin(i);
    busy_ms(10);
    pm_iter_end(-1, -1, 1);
  }
  busy_ms(10); /* after the loop */
  ASSERT_EQ_INT(pm_finalize(), 0);
  char *err = capture_end(&cap);

  char *line = err, *next;
  int iters = 0, seen = 0;
  double init = -1, avg = -1, beta = -1, total = -1, last_t = 0;
  for (; line && *line; line = next) {
    next = strchr(line, '\n');
    if (next) *next++ = '\0';
    unsigned rank;
    unsigned long long it;
    double t, d;
    char extra;
    if (sscanf(line, "[MO833] Paramount Iteration,%u,%llu,%lf,%lf%c", &rank, &it, &t, &d,
               &extra) == 4) {
      ASSERT_EQ_INT(rank, 2);
      ASSERT_EQ_U64(it, (uint64_t)iters);
      ASSERT_OP_DBL(d, >=, 0.010);
      ASSERT_OP_DBL(t, >, last_t);
      last_t = t;
      iters++;
    } else if (sscanf(line, "[MO833] Init time,%u,%lf", &rank, &init) == 2 ||
               sscanf(line, "[MO833] PI avg,%u,%lf", &rank, &avg) == 2 ||
               sscanf(line, "[MO833] Beta,%u,%lf", &rank, &beta) == 2 ||
               sscanf(line, "[MO833] Total time,%u,%lf", &rank, &total) == 2) {
      ASSERT_EQ_INT(rank, 2);
      seen++;
    } else {
      TEST_FAIL_("unexpected stderr line: \"%s\"", line);
    }
  }
  ASSERT_EQ_INT(iters, 3);
  ASSERT_EQ_INT(seen, 4);
  ASSERT_OP_DBL(init, >=, 0.020);
  ASSERT_OP_DBL(avg, >=, 0.010);
  ASSERT_OP_DBL(total, >=, init + 3 * avg);
  /* non-loop (>= 30 ms) over loop (>= 30 ms, ~30 ms): around 1 */
  ASSERT_NEAR(beta, (total - 3 * avg) / (3 * avg), 1e-3);
  ASSERT_OP_DBL(beta, >, 0.5);
  free(err);
}

TEST_MAIN()
