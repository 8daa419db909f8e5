/* test_intake.c - the controller's intake (src/controller/intake.c) against
 * real clients: forked processes speaking the wire protocol over TCP on
 * 127.0.0.1.  Covers many concurrent ranks, every way a peer can be bad
 * (each must cost only its own connection, with a logged reason), the
 * token handshake, STOP, and watching a child process.
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>

#include "common/journal.h"
#include "common/util.h"
#include "common/wire.h"
#include "controller/intake.h"
#include "paramount.h"
#include "test.h"

#define TOKEN "0123456789abcdef0123456789abcdef"

/* ---- fixture: an intake with a journal and stderr captured ----------- */

typedef struct {
  char dir[64];
  char log_path[96];
  journal *jr;
  intake *in;
  uint16_t port;
} fixture;

static void fixture_open(fixture *f, int hello_timeout_ms) {
  snprintf(f->dir, sizeof f->dir, "/tmp/pm_test_intake.XXXXXX");
  ASSERT(mkdtemp(f->dir) != NULL);
  snprintf(f->log_path, sizeof f->log_path, "%s/stderr.log", f->dir);
  int fd = open(f->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT(fd >= 0);
  /* pm_log writes to fd 2, the assertions to the FILE stderr: the log goes
   * to the file for the test to read, failures still reach the terminal. */
  FILE *tty = fdopen(dup(2), "w");
  ASSERT(tty != NULL);
  setvbuf(tty, NULL, _IONBF, 0);
  stderr = tty;
  dup2(fd, 2);
  close(fd);
  ASSERT_EQ_INT(journal_open(f->dir, &f->jr), 0);
  intake_opts o = {.token = TOKEN, .journal = f->jr,
                   .hello_timeout_ms = hello_timeout_ms};
  ASSERT_EQ_INT(intake_open(&o, &f->in), 0);
  f->port = intake_port(f->in);
  ASSERT(f->port != 0);
}

static void fixture_close(fixture *f) {
  intake_close(f->in);
  journal_close(f->jr);
  char p[128];
  snprintf(p, sizeof p, "%s/journal.jsonl", f->dir);
  unlink(p);
  unlink(f->log_path);
  rmdir(f->dir);
}

static char *slurp(const char *path) {
  char *s = NULL;
  size_t n;
  ASSERT_EQ_INT(util_read_file(path, 1 << 28, &s, &n), 0);
  return s;
}

static char *fixture_log(fixture *f) { return slurp(f->log_path); }

static char *fixture_journal(fixture *f) {
  journal_flush(f->jr);
  char p[128];
  snprintf(p, sizeof p, "%s/journal.jsonl", f->dir);
  return slurp(p);
}

/* Counts the journal lines of one event.  Line by line, not strstr over
 * the whole text: ASan's strstr measures the haystack on every call. */
static size_t count_events(const char *journal_text, const char *ev) {
  char prefix[64];
  int n = snprintf(prefix, sizeof prefix, "{\"ev\":\"%s\"", ev);
  size_t count = 0;
  for (const char *p = journal_text; *p;) {
    if (!strncmp(p, prefix, (size_t)n)) count++;
    const char *nl = strchr(p, '\n');
    if (!nl) break;
    p = nl + 1;
  }
  return count;
}

/* Polls until pred(f, arg) holds; fails the test after timeout_ms. */
static void pump_until(fixture *f, int (*pred)(fixture *, long), long arg,
                       int timeout_ms) {
  uint64_t end = clock_mono_ns() + (uint64_t)timeout_ms * 1000000ull;
  while (!pred(f, arg)) {
    if (clock_mono_ns() > end) TEST_FAIL_("condition not reached in %d ms", timeout_ms);
    ASSERT(intake_poll(f->in, 20) >= 0);
  }
}

static int pred_finalized(fixture *f, long nranks) {
  size_t n;
  const intake_rank *const *r = intake_ranks(f->in, &n);
  long done = 0;
  for (size_t i = 0; i < n; i++) done += r[i]->finalized;
  return done >= nranks;
}

static int pred_refused(fixture *f, long want) {
  intake_stats st;
  intake_get_stats(f->in, &st);
  return (long)st.refused >= want;
}

static int pred_proto_errors(fixture *f, long want) {
  intake_stats st;
  intake_get_stats(f->in, &st);
  return (long)st.proto_errors >= want;
}

static int pred_authenticated(fixture *f, long want) {
  intake_stats st;
  intake_get_stats(f->in, &st);
  return (long)st.authenticated >= want;
}

static int pred_no_conns(fixture *f, long unused) {
  (void)unused;
  intake_stats st;
  intake_get_stats(f->in, &st);
  return st.open_conns == 0;
}

static void wait_children(pid_t *pids, int n) {
  for (int i = 0; i < n; i++) {
    int st = 0;
    ASSERT_EQ_INT(waitpid(pids[i], &st, 0), pids[i]);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
      TEST_FAIL_("client %d failed: status 0x%x", i, st);
  }
}

/* ---- client side (runs in forked children; exits, never returns) ---- */

static int cl_connect(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) _exit(90);
  return fd;
}

static void cl_write(int fd, const void *p, size_t n) {
  const uint8_t *b = p;
  while (n > 0) {
    ssize_t w = write(fd, b, n);
    if (w <= 0) _exit(91);
    b += w;
    n -= (size_t)w;
  }
}

static void cl_send(int fd, const wire_msg *m) {
  uint8_t buf[WIRE_MAX_FRAME];
  size_t len;
  if (wire_encode(m, buf, sizeof buf, &len) != 0) _exit(92);
  cl_write(fd, buf, len);
}

/* Reads one frame; returns 0, or -1 on EOF/error. */
static int cl_recv(int fd, wire_msg *m) {
  uint8_t buf[WIRE_MAX_FRAME];
  size_t have = 0, used;
  for (;;) {
    int rc = wire_decode(buf, have, m, &used, NULL);
    if (rc == 0) return 0;
    if (rc != PM_EAGAIN) _exit(93);
    ssize_t n = read(fd, buf + have, 1); /* byte by byte: never over-read */
    if (n <= 0) return -1;
    have += (size_t)n;
  }
}

static void cl_hello_msg(wire_msg *m, const char *token, uint32_t rank) {
  memset(m, 0, sizeof *m);
  m->type = WIRE_HELLO;
  snprintf(m->u.hello.token, sizeof m->u.hello.token, "%s", token);
  snprintf(m->u.hello.node, sizeof m->u.hello.node, "node%u", rank % 3);
  snprintf(m->u.hello.app, sizeof m->u.hello.app, "test");
  m->u.hello.rank = rank;
  m->u.hello.pid = (uint32_t)getpid();
}

/* Connects and authenticates; exits 94 unless WELCOME comes back. */
static int cl_join(uint16_t port, uint32_t rank) {
  int fd = cl_connect(port);
  wire_msg m;
  cl_hello_msg(&m, TOKEN, rank);
  cl_send(fd, &m);
  if (cl_recv(fd, &m) != 0 || m.type != WIRE_WELCOME) _exit(94);
  return fd;
}

static void iter_msg(wire_msg *m, uint32_t rank, uint64_t i) {
  memset(m, 0, sizeof *m);
  m->type = WIRE_ITER;
  m->u.iter.iter = i;
  m->u.iter.t_begin_ns = 1000000000ull * 1700000000ull + i * 1000;
  m->u.iter.wall_ns = 1000 + rank;
  m->u.iter.compute_ns = 700 + i;
  m->u.iter.comm_ns = 300;
  m->u.iter.samples = 16;
}

/* A well-behaved rank: init, n ITERs written in odd-sized chunks (so
 * frames straddle reads), FINALIZE. */
static void cl_rank_run(uint16_t port, uint32_t rank, uint64_t n_iters) {
  int fd = cl_join(port, rank);
  wire_msg m = {.type = WIRE_INIT_BEGIN};
  m.u.mark.t_ns = 1;
  cl_send(fd, &m);
  m.type = WIRE_INIT_END;
  m.u.mark.t_ns = 2;
  cl_send(fd, &m);
  uint8_t *all = malloc(n_iters * 64 + 64);
  size_t len = 0;
  for (uint64_t i = 0; i < n_iters; i++) {
    size_t fl;
    iter_msg(&m, rank, i);
    if (wire_encode(&m, all + len, 64, &fl) != 0) _exit(95);
    len += fl;
  }
  for (size_t off = 0; off < len;) {
    size_t chunk = 1 + (size_t)(rank * 37 + off) % 997;
    if (chunk > len - off) chunk = len - off;
    cl_write(fd, all + off, chunk);
    off += chunk;
  }
  free(all);
  memset(&m, 0, sizeof m);
  m.type = WIRE_FINALIZE;
  m.u.fin.sent = n_iters + 3;
  cl_send(fd, &m);
  close(fd);
  _exit(0);
}

/* ---- cases ----------------------------------------------------------- */

TEST(many_concurrent_ranks_all_data_arrives) {
  fixture f;
  fixture_open(&f, 0);
  enum { NR = 48, NI = 2000 };
  pid_t pids[NR];
  for (int r = 0; r < NR; r++) {
    pids[r] = fork();
    if (pids[r] == 0) cl_rank_run(f.port, (uint32_t)r, NI);
  }
  pump_until(&f, pred_finalized, NR, 30000);
  wait_children(pids, NR);
  size_t n;
  const intake_rank *const *rs = intake_ranks(f.in, &n);
  ASSERT_EQ_INT(n, NR);
  for (size_t k = 0; k < n; k++) {
    const intake_rank *r = rs[k];
    ASSERT_EQ_INT(r->rank, k); /* sorted */
    ASSERT_EQ_U64(r->n_pis, NI);
    ASSERT_EQ_U64(r->init_begin_ns, 1);
    ASSERT_EQ_U64(r->init_end_ns, 2);
    ASSERT_EQ_U64(r->sent, NI + 3);
    for (size_t i = 0; i < NI; i++) {
      ASSERT_EQ_U64(r->pis[i].iter, i);
      ASSERT_EQ_U64(r->pis[i].compute_ns, 700 + i);
      ASSERT_EQ_U64(r->pis[i].wall_ns, 1000 + k);
    }
    char node[16];
    snprintf(node, sizeof node, "node%zu", k % 3);
    ASSERT_STREQ(r->node, node);
  }
  char *j = fixture_journal(&f);
  ASSERT_EQ_U64(count_events(j, "pi"), (uint64_t)NR * NI);
  ASSERT_EQ_U64(count_events(j, "hello"), NR);
  ASSERT_EQ_U64(count_events(j, "finalize"), NR);
  ASSERT(strstr(j, TOKEN) == NULL); /* the token never reaches the journal */
  free(j);
  intake_stats st;
  intake_get_stats(f.in, &st);
  ASSERT_EQ_U64(st.proto_errors, 0);
  ASSERT_EQ_U64(st.refused, 0);
  fixture_close(&f);
}

/* Every way an authenticated peer can send a bad frame, and the reason
 * the controller must log for it. */
typedef struct {
  const char *name;
  uint8_t bytes[16];
  size_t len;
  const char *why;
} bad_frame;

static const bad_frame bad_frames[] = {
    {"garbage", "GET / HTTP/1.1\r\n", 16, "bad magic"},
    {"oversized", {'P', 'M', 1, WIRE_ITER, 0xff, 0xff, 0xff, 0x7f}, 8,
     "payload length above the cap"},
    {"bad version", {'P', 'M', 9, WIRE_ITER, 48, 0, 0, 0}, 8,
     "unsupported protocol version"},
    {"unknown type", {'P', 'M', 1, 77, 0, 0, 0, 0}, 8, "unknown frame type"},
    {"short payload", {'P', 'M', 1, WIRE_INIT_END, 2, 0, 0, 0, 1, 2}, 10,
     "payload too short for its type"},
    {"truncated then closed", {'P', 'M', 1, WIRE_ITER, 48, 0, 0, 0, 1, 2, 3}, 11,
     "connection closed in the middle of a frame"},
    {"client sends STOP", {'P', 'M', 1, WIRE_STOP, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0},
     16, "unexpected STOP frame from a client"},
};

TEST(bad_frames_close_only_their_connection) {
  for (size_t b = 0; b < sizeof bad_frames / sizeof bad_frames[0]; b++) {
    fixture f;
    fixture_open(&f, 0);
    int go[2];
    ASSERT_EQ_INT(pipe(go), 0);
    pid_t pids[2];
    /* A good rank sends half its data, waits for the bad peer to be cut,
     * then sends the rest on the same connection. */
    pids[0] = fork();
    if (pids[0] == 0) {
      close(go[1]);
      int fd = cl_join(f.port, 0);
      wire_msg m;
      for (uint64_t i = 0; i < 100; i++) {
        iter_msg(&m, 0, i);
        cl_send(fd, &m);
      }
      char x;
      if (read(go[0], &x, 1) != 1) _exit(96);
      for (uint64_t i = 100; i < 200; i++) {
        iter_msg(&m, 0, i);
        cl_send(fd, &m);
      }
      memset(&m, 0, sizeof m);
      m.type = WIRE_FINALIZE;
      cl_send(fd, &m);
      close(fd);
      _exit(0);
    }
    pids[1] = fork();
    if (pids[1] == 0) {
      close(go[1]);
      int fd = cl_join(f.port, 1);
      wire_msg m;
      iter_msg(&m, 1, 0);
      cl_send(fd, &m);
      cl_write(fd, bad_frames[b].bytes, bad_frames[b].len);
      if (!strcmp(bad_frames[b].name, "truncated then closed")) _exit(0);
      /* The controller must close: we see EOF (or a reset). */
      char buf[64];
      ssize_t n = read(fd, buf, sizeof buf);
      _exit(n <= 0 ? 0 : 97);
    }
    close(go[0]);
    pump_until(&f, pred_proto_errors, 1, 10000);
    ASSERT_EQ_INT(write(go[1], "g", 1), 1);
    pump_until(&f, pred_finalized, 1, 10000);
    wait_children(pids, 2);
    const intake_rank *good = intake_rank_find(f.in, 0);
    const intake_rank *bad = intake_rank_find(f.in, 1);
    ASSERT(good && bad);
    ASSERT_EQ_U64(good->n_pis, 200);
    ASSERT_EQ_U64(bad->n_pis, 1); /* the frame before the bad one counts */
    ASSERT(good->finalized);
    intake_stats st;
    intake_get_stats(f.in, &st);
    ASSERT_EQ_U64(st.proto_errors, 1);
    char *log = fixture_log(&f);
    ASSERT_CONTAINS(log, bad_frames[b].why);
    ASSERT_CONTAINS(log, "rank 1");
    free(log);
    char *j = fixture_journal(&f);
    ASSERT_CONTAINS(j, "\"ev\":\"conn_error\"");
    ASSERT_CONTAINS(j, bad_frames[b].why);
    free(j);
    close(go[1]);
    fixture_close(&f);
  }
}

/* The client side of a refusal: what it sends, and that it must see the
 * connection closed without a WELCOME. */
typedef enum { REF_BAD_TOKEN, REF_EMPTY_TOKEN, REF_NO_HELLO, REF_SILENT, REF_BIG_RANK } refusal;

static void cl_refused(uint16_t port, refusal how) {
  int fd = cl_connect(port);
  wire_msg m;
  if (how == REF_BAD_TOKEN) cl_hello_msg(&m, "0123456789abcdef0123456789abcdee", 5);
  if (how == REF_EMPTY_TOKEN) cl_hello_msg(&m, "", 5);
  if (how == REF_BIG_RANK) cl_hello_msg(&m, TOKEN, INTAKE_MAX_RANK + 1);
  if (how == REF_NO_HELLO) iter_msg(&m, 5, 0);
  if (how != REF_SILENT) cl_send(fd, &m);
  int rc = cl_recv(fd, &m);
  _exit(rc == -1 ? 0 : 98); /* EOF, never WELCOME */
}

TEST(refusals_bad_token_no_hello_timeout) {
  static const struct {
    refusal how;
    const char *why;
  } cases[] = {
      {REF_BAD_TOKEN, "HELLO with a wrong token"},
      {REF_EMPTY_TOKEN, "HELLO with a wrong token"},
      {REF_NO_HELLO, "first frame is ITER, not HELLO"},
      {REF_SILENT, "no HELLO within the time limit"},
      {REF_BIG_RANK, "rank number above the limit"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    fixture f;
    fixture_open(&f, 300);
    uint64_t t0 = clock_mono_ns();
    pid_t pids[2];
    pids[0] = fork();
    if (pids[0] == 0) cl_refused(f.port, cases[k].how);
    pids[1] = fork(); /* a good rank beside it is unaffected */
    if (pids[1] == 0) cl_rank_run(f.port, 0, 50);
    pump_until(&f, pred_refused, 1, 5000);
    pump_until(&f, pred_finalized, 1, 5000);
    wait_children(pids, 2);
    if (cases[k].how == REF_SILENT) /* not before the time limit */
      ASSERT_OP_DBL((double)(clock_mono_ns() - t0) / 1e6, >=, 290);
    ASSERT_EQ_U64(intake_rank_find(f.in, 0)->n_pis, 50);
    ASSERT(intake_rank_find(f.in, 5) == NULL);
    intake_stats st;
    intake_get_stats(f.in, &st);
    ASSERT_EQ_U64(st.authenticated, 1);
    char *log = fixture_log(&f);
    ASSERT_CONTAINS(log, cases[k].why);
    ASSERT(strstr(log, TOKEN) == NULL);
    free(log);
    char *j = fixture_journal(&f);
    ASSERT_CONTAINS(j, "\"ev\":\"conn_refused\"");
    ASSERT(strstr(j, TOKEN) == NULL);
    ASSERT(strstr(j, "0123456789abcdef0123456789abcdee") == NULL);
    free(j);
    fixture_close(&f);
  }
}

/* Every connected rank receives STOP(stop_iter); a rank that joins after
 * the request gets it right after WELCOME. */
static void cl_wait_stop(uint16_t port, uint32_t rank) {
  int fd = cl_join(port, rank);
  wire_msg m;
  if (cl_recv(fd, &m) != 0) _exit(80);
  if (m.type != WIRE_STOP) _exit(81);
  if (m.u.stop.stop_iter != 4242) _exit(82);
  memset(&m, 0, sizeof m);
  m.type = WIRE_FINALIZE;
  cl_send(fd, &m);
  close(fd);
  _exit(0);
}

TEST(stop_reaches_every_rank) {
  fixture f;
  fixture_open(&f, 0);
  enum { NR = 8 };
  pid_t pids[NR + 1];
  for (int r = 0; r < NR; r++) {
    pids[r] = fork();
    if (pids[r] == 0) cl_wait_stop(f.port, (uint32_t)r);
  }
  pump_until(&f, pred_authenticated, NR, 10000);
  ASSERT_EQ_INT(intake_request_stop(f.in, 4242), NR);
  pids[NR] = fork();
  if (pids[NR] == 0) cl_wait_stop(f.port, NR);
  pump_until(&f, pred_finalized, NR + 1, 10000);
  wait_children(pids, NR + 1);
  char *j = fixture_journal(&f);
  ASSERT_CONTAINS(j, "\"ev\":\"stop_request\"");
  ASSERT_CONTAINS(j, "\"stop_iter\":4242");
  free(j);
  fixture_close(&f);
}

TEST(run_until_returns_when_the_child_exits) {
  fixture f;
  fixture_open(&f, 0);
  pid_t pid = fork();
  if (pid == 0) cl_rank_run(f.port, 3, 500);
  int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
  ASSERT(pfd >= 0);
  ASSERT_EQ_INT(intake_run_until(f.in, pfd, 20000), 1);
  /* Everything the child sent before it exited was read. */
  const intake_rank *r = intake_rank_find(f.in, 3);
  ASSERT(r != NULL);
  ASSERT_EQ_U64(r->n_pis, 500);
  ASSERT(r->finalized);
  ASSERT_EQ_INT(r->connected, 0);
  int st;
  ASSERT_EQ_INT(waitpid(pid, &st, 0), pid);
  close(pfd);
  fixture_close(&f);
}

TEST(run_until_times_out_without_a_child) {
  fixture f;
  fixture_open(&f, 0);
  uint64_t t0 = clock_mono_ns();
  ASSERT_EQ_INT(intake_run_until(f.in, -1, 150), 0);
  double ms = (double)(clock_mono_ns() - t0) / 1e6;
  ASSERT_OP_DBL(ms, >=, 149);
  ASSERT_OP_DBL(ms, <, 2000);
  fixture_close(&f);
}

TEST(disconnect_before_finalize_is_logged) {
  fixture f;
  fixture_open(&f, 0);
  pid_t pid = fork();
  if (pid == 0) {
    int fd = cl_join(f.port, 7);
    wire_msg m;
    iter_msg(&m, 7, 0);
    cl_send(fd, &m);
    close(fd);
    _exit(0);
  }
  pump_until(&f, pred_authenticated, 1, 5000);
  pump_until(&f, pred_no_conns, 0, 5000);
  wait_children(&pid, 1);
  ASSERT_EQ_U64(intake_rank_find(f.in, 7)->n_pis, 1);
  char *log = fixture_log(&f);
  ASSERT_CONTAINS(log, "rank 7");
  ASSERT_CONTAINS(log, "before FINALIZE");
  free(log);
  char *j = fixture_journal(&f);
  ASSERT_CONTAINS(j, "\"finalized\":false");
  free(j);
  fixture_close(&f);
}

TEST(open_validates_options) {
  intake *in = (intake *)1;
  char err[160] = "";
  intake_opts o = {.token = NULL, .err = err, .err_cap = sizeof err};
  ASSERT_EQ_INT(intake_open(&o, &in), PM_EINVAL);
  ASSERT(in == NULL);
  ASSERT_CONTAINS(err, "token");
  o.token = TOKEN;
  o.listen_host = "localhost:80";
  ASSERT_EQ_INT(intake_open(&o, &in), PM_EINVAL);
  ASSERT(in == NULL);
  ASSERT_CONTAINS(err, "localhost:80");
  char big[200];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  o.listen_host = NULL;
  o.token = big;
  ASSERT_EQ_INT(intake_open(&o, &in), PM_EINVAL);
  ASSERT_CONTAINS(err, "longer than");
  /* A port that is taken. */
  o.token = TOKEN;
  intake *a = NULL;
  ASSERT_EQ_INT(intake_open(&o, &a), 0);
  o.port = intake_port(a);
  ASSERT_EQ_INT(intake_open(&o, &in), PM_ESYS);
  ASSERT_CONTAINS(err, "cannot listen");
  intake_close(a);
  intake_close(NULL);
}

TEST(endpoint_is_loopback_by_default_and_says_when_not) {
  fixture f;
  fixture_open(&f, 0);
  char ep[64];
  ASSERT_EQ_INT(intake_endpoint(f.in, ep, sizeof ep), 0);
  char want[64];
  snprintf(want, sizeof want, "127.0.0.1:%u", f.port);
  ASSERT_STREQ(ep, want);
  char small[4];
  ASSERT_EQ_INT(intake_endpoint(f.in, small, sizeof small), PM_ETOOBIG);
  intake *wide = NULL;
  intake_opts o = {.token = TOKEN, .listen_host = "0.0.0.0"};
  ASSERT_EQ_INT(intake_open(&o, &wide), 0);
  intake_close(wide);
  char *log = fixture_log(&f);
  ASSERT_CONTAINS(log, "reachable from other hosts");
  free(log);
  char *j = fixture_journal(&f);
  ASSERT_CONTAINS(j, "\"loopback\":true");
  free(j);
  fixture_close(&f);
}

TEST(every_event_type_is_kept_and_journaled) {
  fixture f;
  fixture_open(&f, 0);
  pid_t pid = fork();
  if (pid == 0) {
    int fd = cl_join(f.port, 2);
    wire_msg m = {.type = WIRE_PHASE};
    snprintf(m.u.phase.name, sizeof m.u.phase.name, "warmup");
    m.u.phase.planned_iters = 10;
    cl_send(fd, &m);
    iter_msg(&m, 2, 0);
    cl_send(fd, &m);
    memset(&m, 0, sizeof m);
    m.type = WIRE_PHASE;
    snprintf(m.u.phase.name, sizeof m.u.phase.name, "gan");
    m.u.phase.first_iter = 1;
    cl_send(fd, &m);
    iter_msg(&m, 2, 1);
    cl_send(fd, &m);
    memset(&m, 0, sizeof m);
    m.type = WIRE_EPOCH;
    m.u.epoch.epoch = 0;
    m.u.epoch.last_iter = 1;
    cl_send(fd, &m);
    memset(&m, 0, sizeof m);
    m.type = WIRE_CHECKPOINT;
    m.u.checkpoint.iter = 1;
    snprintf(m.u.checkpoint.path, sizeof m.u.checkpoint.path, "/tmp/ck \"1\"");
    cl_send(fd, &m);
    memset(&m, 0, sizeof m);
    m.type = WIRE_HEARTBEAT;
    m.u.fin.sent = 6;
    cl_send(fd, &m);
    memset(&m, 0, sizeof m);
    m.type = WIRE_FINALIZE;
    m.u.fin.dropped = 3;
    m.u.fin.sent = 7;
    cl_send(fd, &m);
    close(fd);
    _exit(0);
  }
  pump_until(&f, pred_finalized, 1, 5000);
  pump_until(&f, pred_no_conns, 0, 5000);
  wait_children(&pid, 1);
  const intake_rank *r = intake_rank_find(f.in, 2);
  ASSERT_EQ_U64(r->n_phases, 2);
  ASSERT_STREQ(r->phases[0].name, "warmup");
  ASSERT_EQ_INT(r->pis[0].phase, 0);
  ASSERT_EQ_INT(r->pis[1].phase, 1);
  ASSERT_EQ_U64(r->n_epochs, 1);
  ASSERT_EQ_U64(r->epochs[0].last_iter, 1);
  ASSERT_EQ_U64(r->n_checkpoints, 1);
  ASSERT_STREQ(r->checkpoints[0].path, "/tmp/ck \"1\"");
  ASSERT(r->last_heartbeat_ns > 0);
  ASSERT_EQ_U64(r->dropped, 3);
  ASSERT_EQ_U64(r->sent, 7);
  /* The journal parses back with one record per event. */
  journal_flush(f.jr);
  static const char *const evs[] = {"intake_listen", "hello", "phase", "pi",
                                    "phase", "pi", "epoch", "checkpoint",
                                    "heartbeat", "finalize", "disconnect"};
  long bad_line;
  const char *warn;
  ASSERT_EQ_INT(journal_read(f.dir, NULL, NULL, &bad_line, &warn), 0);
  char *text = fixture_journal(&f);
  const char *p = text;
  for (size_t k = 0; k < sizeof evs / sizeof evs[0]; k++) {
    char needle[48];
    snprintf(needle, sizeof needle, "\"ev\":\"%s\"", evs[k]);
    const char *q = strstr(p, needle);
    if (!q) TEST_FAIL_("journal lacks event %zu (%s) in order", k, evs[k]);
    p = q + strlen(needle);
  }
  ASSERT_CONTAINS(text, "\"path\":\"/tmp/ck \\\"1\\\"\"");
  free(text);
  fixture_close(&f);
}

/* A rank that declares its whole plan before the first PI: each PI falls
 * in the phase that starts latest at or before its iteration, not in the
 * phase declared last.  A rank that declares phases without end is cut
 * off at the cap, and only that rank. */
TEST(phases_declared_up_front_and_capped) {
  fixture f;
  fixture_open(&f, 0);
  pid_t pid[2];
  for (int k = 0; k < 2; k++) {
    pid[k] = fork();
    if (pid[k]) continue;
    int fd = cl_join(f.port, (uint32_t)k);
    wire_msg m;
    if (k == 0) {
      static const struct { const char *name; uint64_t first, n; } plan[] = {
          {"warmup", 0, 3}, {"gan", 3, 5}, {"tail", 8, 2}};
      for (int i = 0; i < 3; i++) {
        memset(&m, 0, sizeof m);
        m.type = WIRE_PHASE;
        snprintf(m.u.phase.name, sizeof m.u.phase.name, "%s", plan[i].name);
        m.u.phase.first_iter = plan[i].first;
        m.u.phase.planned_iters = plan[i].n;
        cl_send(fd, &m);
      }
      for (uint64_t it = 0; it < 10; it++) {
        iter_msg(&m, 0, it);
        cl_send(fd, &m);
      }
      memset(&m, 0, sizeof m);
      m.type = WIRE_FINALIZE;
      cl_send(fd, &m);
    } else {
      for (int i = 0; i < 1100; i++) {
        memset(&m, 0, sizeof m);
        m.type = WIRE_PHASE;
        snprintf(m.u.phase.name, sizeof m.u.phase.name, "p%d", i);
        cl_send(fd, &m);
      }
      char b;
      while (read(fd, &b, 1) > 0) { /* until the intake hangs up */
      }
    }
    close(fd);
    _exit(0);
  }
  pump_until(&f, pred_finalized, 1, 5000);
  pump_until(&f, pred_proto_errors, 1, 5000);
  pump_until(&f, pred_no_conns, 0, 5000);
  wait_children(pid, 2);
  const intake_rank *r = intake_rank_find(f.in, 0);
  ASSERT(r != NULL);
  ASSERT_EQ_U64(r->n_pis, 10);
  static const int want[10] = {0, 0, 0, 1, 1, 1, 1, 1, 2, 2};
  for (int i = 0; i < 10; i++) {
    if (r->pis[i].phase != want[i])
      TEST_FAIL_("PI %d in phase %d, want %d", i, r->pis[i].phase, want[i]);
  }
  const intake_rank *x = intake_rank_find(f.in, 1);
  ASSERT(x != NULL);
  ASSERT_EQ_U64(x->n_phases, 1024);
  char *j = fixture_journal(&f);
  ASSERT_CONTAINS(j, "more than 1024 phases declared");
  free(j);
  fixture_close(&f);
}

/* A rank is heard from its HELLO on: one that connects and then says
 * nothing more can be judged silent by the controller. */
TEST(hello_counts_as_hearing_from_a_rank) {
  fixture f;
  fixture_open(&f, 0);
  int p[2];
  ASSERT_EQ_INT(pipe(p), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(p[1]);
    int fd = cl_join(f.port, 5);
    char b;
    while (read(p[0], &b, 1) > 0) { /* holds the connection, silent */
    }
    close(fd);
    _exit(0);
  }
  close(p[0]);
  pump_until(&f, pred_authenticated, 1, 5000);
  const intake_rank *r = intake_rank_find(f.in, 5);
  ASSERT(r != NULL);
  ASSERT(r->last_heard_ns > 0);
  ASSERT_EQ_U64(r->n_pis, 0);
  ASSERT_EQ_U64(r->last_heartbeat_ns, 0); /* nothing but the HELLO */
  close(p[1]);
  pump_until(&f, pred_no_conns, 0, 5000);
  wait_children(&pid, 1);
  fixture_close(&f);
}

TEST_MAIN()
