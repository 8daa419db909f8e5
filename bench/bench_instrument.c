/* bench_instrument.c - what one libparamount instrumentation call costs.
 *
 * Measures, with no controller and with a live local sink draining the
 * socket, the median and p99 of one pm_iter_begin+pm_iter_end pair and of
 * each call, against a bare clock_gettime pair measured in the same run
 * (the floor any timing library pays) and against the 1000 ns target.
 * Usage: bench_instrument [SAMPLES]   (default 2000 batches of 100)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/wire.h"
#include "paramount.h"

#define BATCH 100
#define TARGET_NS 1000.0

static inline uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_dbl(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

typedef struct {
  double med, p99;
} stats;

static stats stats_of(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_dbl);
  stats s = {v[n / 2], v[(int)((double)n * 0.99)]};
  return s;
}

static void print_row(const char *what, stats s, double peer_med) {
  printf("  %-34s median %8.1f ns  p99 %8.1f ns  x%-6.2f peer  %5.1f%% of target\n", what,
         s.med, s.p99, peer_med > 0 ? s.med / peer_med : 0.0, 100.0 * s.med / TARGET_NS);
}

/* Per-operation cost from batches of BATCH operations (amortises the
 * clock reads that time the batch). */
#define TIME_BATCHES(out, n, ...)                                              \
  for (int s_ = 0; s_ < (n); s_++) {                                           \
    uint64_t t0_ = mono_ns();                                                  \
    for (int i_ = 0; i_ < BATCH; i_++) { __VA_ARGS__; }                             \
    (out)[s_] = (double)(mono_ns() - t0_) / BATCH;                             \
  }

static volatile uint64_t sink_u64;

static void run_suite(const char *title, int n) {
  double *v = malloc(sizeof *v * (size_t)n);
  uint64_t it = 0;
  printf("%s\n", title);

  TIME_BATCHES(v, n, {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    clock_gettime(CLOCK_MONOTONIC, &b);
    sink_u64 += (uint64_t)(b.tv_nsec - a.tv_nsec);
  });
  stats peer = stats_of(v, n);
  print_row("peer: bare clock_gettime pair", peer, peer.med);

  TIME_BATCHES(v, n, {
    pm_iter_begin(it++);
    pm_iter_end(0.001, 0.0005, 32);
  });
  stats pair = stats_of(v, n);
  print_row("pm_iter_begin + pm_iter_end", pair, peer.med);

  /* begin alone (each one restarts the open iteration). */
  TIME_BATCHES(v, n, { pm_iter_begin(it++); });
  print_row("pm_iter_begin", stats_of(v, n), peer.med);
  pm_iter_end(-1, -1, 0);

  /* end alone: a begin outside the timed region for each end. */
  for (int s = 0; s < n; s++) {
    double acc = 0;
    for (int i = 0; i < BATCH; i++) {
      pm_iter_begin(it++);
      uint64_t t0 = mono_ns();
      pm_iter_end(0.001, 0.0005, 32);
      acc += (double)(mono_ns() - t0);
    }
    v[s] = acc / BATCH;
  }
  stats end = stats_of(v, n);
  end.med -= peer.med / 2; /* net of the one clock read that timed it */
  end.p99 -= peer.med / 2;
  print_row("pm_iter_end (net of clock read)", end, peer.med);

  TIME_BATCHES(v, n, { pm_epoch_end(it, it); it++; });
  print_row("pm_epoch_end", stats_of(v, n), peer.med);

  TIME_BATCHES(v, n, {
    uint64_t k;
    sink_u64 += (uint64_t)pm_stop_requested(&k);
  });
  print_row("pm_stop_requested", stats_of(v, n), peer.med);

  printf("  => pair median %.1f ns = %.2fx the clock pair, %.2fx the %g ns target (%s)\n",
         pair.med, pair.med / peer.med, pair.med / TARGET_NS, TARGET_NS,
         pair.med <= TARGET_NS ? "met" : "MISSED");
  printf("  connected %d, dropped %llu\n", pm_connected(),
         (unsigned long long)pm_dropped_events());
  free(v);
}

/* ---- a sink that plays controller: WELCOME, then read and discard ---- */

static int sink_lfd;
static volatile int sink_quit;
static volatile uint64_t sink_bytes;

static void *sink_main(void *arg) {
  (void)arg;
  int fd = accept(sink_lfd, NULL, NULL);
  if (fd < 0) return NULL;
  uint8_t buf[65536];
  int welcomed = 0;
  while (!sink_quit) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 50) <= 0) continue;
    ssize_t k = recv(fd, buf, sizeof buf, 0);
    if (k <= 0) break;
    sink_bytes += (uint64_t)k;
    if (!welcomed) { /* the first bytes hold HELLO */
      wire_msg w = {.type = WIRE_WELCOME};
      uint8_t out[WIRE_MAX_FRAME];
      size_t len;
      wire_encode(&w, out, sizeof out, &len);
      if (send(fd, out, len, MSG_NOSIGNAL) != (ssize_t)len) break;
      welcomed = 1;
    }
  }
  close(fd);
  return NULL;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 2000;
  if (n < 10 || n > 1000000) {
    fprintf(stderr, "bench_instrument: SAMPLES must be in 10..1000000, got \"%s\"\n",
            argv[1]);
    return 2;
  }
  printf("bench_instrument: %d samples of %d calls each; target %g ns per call\n", n,
         BATCH, TARGET_NS);

  unsetenv("PARAMOUNT_ENDPOINT");
  unsetenv("PARAMOUNT_MO833");
  pm_init();
  pm_init_end();
  run_suite("no controller (PARAMOUNT_ENDPOINT unset)", n);
  pm_finalize();

  sink_lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof a;
  if (sink_lfd < 0 || bind(sink_lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
      listen(sink_lfd, 1) != 0 || getsockname(sink_lfd, (struct sockaddr *)&a, &sl) != 0) {
    perror("bench_instrument: local sink");
    return 1;
  }
  char ep[64];
  snprintf(ep, sizeof ep, "127.0.0.1:%u", ntohs(a.sin_port));
  setenv("PARAMOUNT_ENDPOINT", ep, 1);
  pthread_t th;
  pthread_create(&th, NULL, sink_main, NULL);
  pm_init();
  pm_init_end();
  for (int i = 0; i < 300 && !pm_connected(); i++) usleep(10000);
  run_suite("live local sink draining the socket", n);
  pm_finalize();
  sink_quit = 1;
  pthread_join(th, NULL);
  close(sink_lfd);
  printf("  sink received %llu bytes\n", (unsigned long long)sink_bytes);
  return 0;
}
