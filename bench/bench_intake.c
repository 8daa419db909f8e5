/* bench_intake.c - how many rank events one controller takes in per second.
 *
 * 64 forked senders, each with its own TCP connection to one intake on
 * 127.0.0.1, send pre-encoded ITER frames as fast as they can; the intake
 * decodes, keeps and journals every one.  Also measures the journal alone
 * (records/s, MB/s).  Prints medians over repetitions; target >= 1e6
 * events/s with the journal on.
 *
 *   bench_intake [senders=64] [frames_per_sender=20000] [reps=5]
 */
#include <errno.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/journal.h"
#include "common/util.h"
#include "common/wire.h"
#include "controller/intake.h"
#include "paramount.h"

#define TOKEN "bench0123456789abcdef0123456789a"

static void die(const char *what) {
  fprintf(stderr, "bench_intake: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void write_all(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w <= 0) _exit(2);
    p += w;
    n -= (size_t)w;
  }
}

/* One sender: authenticate, wait for the start (EOF on the pipe), send
 * every frame, FINALIZE, exit. */
static void sender(uint16_t port, uint32_t rank, size_t frames, int start_fd) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) _exit(3);
  wire_msg m = {.type = WIRE_HELLO};
  snprintf(m.u.hello.token, sizeof m.u.hello.token, "%s", TOKEN);
  snprintf(m.u.hello.node, sizeof m.u.hello.node, "bench");
  m.u.hello.rank = rank;
  uint8_t buf[WIRE_MAX_FRAME];
  size_t len;
  if (wire_encode(&m, buf, sizeof buf, &len) != 0) _exit(4);
  write_all(fd, buf, len);
  if (read(fd, buf, 12) != 12) _exit(5); /* WELCOME */

  size_t fl = 0;
  uint8_t *all = malloc(frames * 64);
  if (!all) _exit(6);
  size_t total = 0;
  for (size_t i = 0; i < frames; i++) {
    memset(&m, 0, sizeof m);
    m.type = WIRE_ITER;
    m.u.iter.iter = i;
    m.u.iter.t_begin_ns = 1700000000000000000ull + i * 1000000;
    m.u.iter.wall_ns = 1000000;
    m.u.iter.compute_ns = 900000;
    m.u.iter.comm_ns = 100000;
    m.u.iter.samples = 32;
    if (wire_encode(&m, all + total, 64, &fl) != 0) _exit(7);
    total += fl;
  }
  char x;
  while (read(start_fd, &x, 1) < 0 && errno == EINTR) {
  }
  for (size_t off = 0; off < total; off += 64 * 1024) {
    size_t n = total - off < 64 * 1024 ? total - off : 64 * 1024;
    write_all(fd, all + off, n);
  }
  memset(&m, 0, sizeof m);
  m.type = WIRE_FINALIZE;
  m.u.fin.sent = frames;
  wire_encode(&m, buf, sizeof buf, &len);
  write_all(fd, buf, len);
  close(fd);
  _exit(0);
}

static int all_finalized(intake *in, size_t want) {
  size_t n;
  const intake_rank *const *r = intake_ranks(in, &n);
  size_t done = 0;
  for (size_t i = 0; i < n; i++) done += r[i]->finalized;
  return done == want;
}

/* One repetition; returns events/s (and the journal's bytes in *jbytes). */
static double run_once(int nsend, size_t frames, int with_journal, double *jbytes) {
  char dir[] = "/tmp/pm_bench_intake.XXXXXX";
  if (!mkdtemp(dir)) die("mkdtemp");
  journal *jr = NULL;
  if (with_journal && journal_open(dir, &jr) != 0) die("journal_open");
  intake *in = NULL;
  intake_opts o = {.token = TOKEN, .journal = jr};
  if (intake_open(&o, &in) != 0) die("intake_open");
  int start[2];
  if (pipe(start) != 0) die("pipe");
  pid_t *pids = calloc((size_t)nsend, sizeof *pids);
  for (int i = 0; i < nsend; i++) {
    pids[i] = fork();
    if (pids[i] < 0) die("fork");
    if (pids[i] == 0) {
      uint16_t port = intake_port(in);
      close(start[1]);
      intake_close(in); /* the child's copy; the parent's socket stays */
      sender(port, (uint32_t)i, frames, start[0]);
    }
  }
  close(start[0]);
  intake_stats st;
  do {
    if (intake_poll(in, 100) < 0) die("intake_poll");
    intake_get_stats(in, &st);
    int ws;
    if (waitpid(-1, &ws, WNOHANG) > 0) { /* a sender died before the start */
      fprintf(stderr, "bench_intake: a sender failed to connect (0x%x)\n", ws);
      exit(1);
    }
  } while (st.authenticated < (uint64_t)nsend);
  uint64_t t0 = clock_mono_ns();
  close(start[1]); /* go */
  while (!all_finalized(in, (size_t)nsend))
    if (intake_poll(in, 100) < 0) die("intake_poll");
  if (jr) journal_flush(jr);
  uint64_t t1 = clock_mono_ns();
  intake_get_stats(in, &st);
  uint64_t events = st.frames - (uint64_t)nsend; /* minus the FINALIZEs */
  if (events != (uint64_t)nsend * frames) {
    fprintf(stderr, "bench_intake: lost events: %llu of %llu\n",
            (unsigned long long)events, (unsigned long long)nsend * frames);
    exit(1);
  }
  for (int i = 0; i < nsend; i++) {
    int ws;
    waitpid(pids[i], &ws, 0);
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
      fprintf(stderr, "bench_intake: sender %d failed (0x%x)\n", i, ws);
      exit(1);
    }
  }
  free(pids);
  *jbytes = (double)journal_bytes(jr);
  intake_close(in);
  journal_close(jr);
  char p[64];
  snprintf(p, sizeof p, "%s/journal.jsonl", dir);
  unlink(p);
  rmdir(dir);
  return (double)events / ((double)(t1 - t0) / 1e9);
}

/* The journal alone, two ways: PI lines rendered by the caller
 * (journal_append_line, what the intake does) and the same records built
 * as json-c objects (journal_append, the path of every other event). */
static void journal_once(size_t records, int via_jsonc, double *rec_per_s,
                         double *mb_per_s) {
  char dir[] = "/tmp/pm_bench_journal.XXXXXX";
  if (!mkdtemp(dir)) die("mkdtemp");
  journal *jr;
  if (journal_open(dir, &jr) != 0) die("journal_open");
  struct json_object *rec = json_object_new_object();
  struct json_object *t = json_object_new_double(0), *it = json_object_new_uint64(0);
  json_object_object_add(rec, "ev", json_object_new_string("pi"));
  json_object_object_add(rec, "t", t);
  json_object_object_add(rec, "rank", json_object_new_uint64(3));
  json_object_object_add(rec, "iter", it);
  json_object_object_add(rec, "t_begin_ns", json_object_new_uint64(1700000000000000000ull));
  json_object_object_add(rec, "wall_ns", json_object_new_uint64(1000000));
  json_object_object_add(rec, "compute_ns", json_object_new_uint64(900000));
  json_object_object_add(rec, "comm_ns", json_object_new_uint64(100000));
  json_object_object_add(rec, "samples", json_object_new_uint64(32));
  char line[256];
  uint64_t t0 = clock_mono_ns();
  for (size_t i = 0; i < records; i++) {
    int rc;
    if (via_jsonc) {
      json_object_set_double(t, 1700000000.0 + (double)i * 1e-6);
      json_object_set_uint64(it, i);
      rc = journal_append(jr, rec);
    } else {
      /* A fixed rendered line: this measures the journal, not formatting. */
      int n = snprintf(line, sizeof line,
                       "{\"ev\":\"pi\",\"t\":1700000000.000001,\"rank\":3,\"iter\":%zu,"
                       "\"t_begin_ns\":1700000000000000000,\"wall_ns\":1000000,"
                       "\"compute_ns\":900000,\"comm_ns\":100000,\"samples\":32}",
                       i % 10);
      rc = journal_append_line(jr, line, (size_t)n);
    }
    if (rc != 0) die("journal_append");
  }
  journal_flush(jr);
  uint64_t t1 = clock_mono_ns();
  double s = (double)(t1 - t0) / 1e9;
  *rec_per_s = (double)records / s;
  *mb_per_s = (double)journal_bytes(jr) / s / 1e6;
  json_object_put(rec);
  journal_close(jr);
  char p[64];
  snprintf(p, sizeof p, "%s/journal.jsonl", dir);
  unlink(p);
  rmdir(dir);
}

static int cmp_dbl(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_dbl);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv) {
  int nsend = argc > 1 ? atoi(argv[1]) : 64;
  size_t frames = argc > 2 ? (size_t)atol(argv[2]) : 20000;
  int reps = argc > 3 ? atoi(argv[3]) : 5;
  if (nsend < 1 || nsend > 1000 || frames < 1 || reps < 1 || reps > 100) {
    fprintf(stderr, "usage: bench_intake [senders 1..1000] [frames>=1] [reps 1..100]\n");
    return 2;
  }
  double on[100], off[100], jb = 0, rps[100], mbs[100], jrps[100], jmbs[100];
  for (int r = 0; r < reps; r++) {
    on[r] = run_once(nsend, frames, 1, &jb);
    double unused;
    off[r] = run_once(nsend, frames, 0, &unused);
    journal_once((size_t)nsend * frames, 0, &rps[r], &mbs[r]);
    journal_once((size_t)nsend * frames, 1, &jrps[r], &jmbs[r]);
  }
  double m_on = median(on, reps), m_off = median(off, reps);
  printf("intake: %d senders x %zu ITER frames, %d repetitions, medians\n", nsend,
         frames, reps);
  printf("  with journal     %12.0f events/s  (%.0f bytes/event in the journal)\n",
         m_on, jb / ((double)nsend * (double)frames));
  printf("  without journal  %12.0f events/s\n", m_off);
  printf("  ratio with/without journal: %.2f\n", m_on / m_off);
  printf("  target >= 1000000 events/s with journal: %s\n",
         m_on >= 1e6 ? "met" : "NOT met");
  double l = median(rps, reps), c = median(jrps, reps);
  printf("journal alone, rendered lines:  %12.0f records/s  %8.1f MB/s\n", l,
         median(mbs, reps));
  printf("journal alone, json-c objects:  %12.0f records/s  %8.1f MB/s\n", c,
         median(jmbs, reps));
  printf("  ratio rendered/json-c: %.1f\n", l / c);
  return 0;
}
