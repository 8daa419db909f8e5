/* burn.c - paramount-burn, the small MPI workload Paramount's tests run.
 *
 * Each iteration every rank does its share of a global batch of
 * floating-point work, then one MPI_Allreduce sums the partial results and
 * carries each rank's stop request, so all ranks agree on where to stop
 * without an extra collective.  Timings go out through libparamount with
 * compute and communication split; docs/burn.md has the whole contract.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "burn_core.h"
#include "paramount.h"

/* Words at the head of the allreduce buffer; then one stop slot per rank,
 * then filler up to --allreduce-bytes. */
enum { SLOT_CHECKSUM = 0, SLOT_SAMPLES = 1, SLOT_STOP0 = 2 };

/* Exit statuses (documented in --help and docs/burn.md). */
enum { EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

typedef struct {
  uint64_t next_iter; /* iterations completed so far, over all runs */
  uint64_t samples_done;
  uint64_t checksum;
} burn_state;

static double burn_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t burn_real_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

static void burn_sleep_ms(uint64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* MPI_Allreduce that waits without spinning.  Open MPI busy-polls while
 * a rank waits for slower ones; on a CPU-quota'd node that spin eats the
 * quota the next iteration's compute needs, so a fast node would look
 * slower than it is.  Polling with short sleeps keeps the wait off the
 * CPU at the price of up to ~100 us of latency. */
static void burn_allreduce_sleepy(uint64_t *buf, int nwords) {
  MPI_Request req;
  MPI_Iallreduce(MPI_IN_PLACE, buf, nwords, MPI_UINT64_T, MPI_SUM,
                 MPI_COMM_WORLD, &req);
  int done = 0;
  for (;;) {
    MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (done) break;
    struct timespec ts = {0, 100000};
    nanosleep(&ts, NULL);
  }
}

/* The rank as the launcher tells it, before MPI_Init: option errors are
 * printed once per job, not once per rank. */
static int burn_env_rank(void) {
  const char *vars[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    const char *v = getenv(vars[i]);
    if (v && *v) return atoi(v);
  }
  return 0;
}

static void burn_ckpt_fill(burn_ckpt *ck, const burn_config *cfg,
                           const burn_state *st, uint64_t ipe, int nranks) {
  memset(ck, 0, sizeof *ck);
  ck->next_iter = st->next_iter;
  ck->epoch = st->next_iter / ipe;
  ck->samples_done = st->samples_done;
  ck->checksum = st->checksum;
  ck->samples_per_epoch = cfg->samples_per_epoch;
  ck->batch = cfg->batch;
  ck->epochs = cfg->epochs;
  ck->work_madds = cfg->work_madds;
  ck->nranks = (uint64_t)nranks;
  ck->written_ns = burn_real_ns();
  snprintf(ck->phases_spec, sizeof ck->phases_spec, "%s", cfg->phases_spec);
}

/* Rank 0 only: writes the checkpoint and tells the controller about it. */
static int burn_checkpoint_save(const char *path, const burn_config *cfg,
                                const burn_state *st, uint64_t ipe,
                                int nranks) {
  burn_ckpt ck;
  burn_ckpt_fill(&ck, cfg, st, ipe, nranks);
  char why[1200];
  int rc = burn_ckpt_write(path, &ck, why, sizeof why);
  if (rc) {
    fprintf(stderr, BURN_PROG ": checkpoint %s not written: %s\n", path, why);
    return rc;
  }
  /* Reported as the last iteration it holds, the API's convention. */
  pm_checkpoint(path, st->next_iter - 1);
  if (!cfg->quiet)
    printf(BURN_PROG ": checkpoint %s after iteration %" PRIu64 "\n", path,
           st->next_iter - 1);
  return 0;
}

/* Rank 0: checks the checkpoint directory and loads --resume.  Writes a
 * one-line message into msg and returns an exit status (0 = go on). */
static int burn_setup_rank0(const burn_config *cfg, burn_state *st,
                            char *ckpt_path, size_t path_cap, char *msg,
                            size_t msg_cap) {
  struct stat sb;
  char real[PATH_MAX];
  if (stat(cfg->ckpt_dir, &sb) != 0 || !S_ISDIR(sb.st_mode) ||
      access(cfg->ckpt_dir, W_OK) != 0 || !realpath(cfg->ckpt_dir, real)) {
    snprintf(msg, msg_cap, "checkpoint directory %s: not a writable directory",
             cfg->ckpt_dir);
    return EXIT_USAGE;
  }
  /* Absolute, because the controller reading it has another cwd. */
  if (snprintf(ckpt_path, path_cap, "%s/%s", strcmp(real, "/") ? real : "",
               BURN_CKPT_NAME) >= (int)path_cap ||
      strlen(ckpt_path) > BURN_PATH_MAX) {
    snprintf(msg, msg_cap, "checkpoint directory %s: path too long",
             cfg->ckpt_dir);
    return EXIT_USAGE;
  }
  if (cfg->resume_path[0]) {
    burn_ckpt ck;
    char why[600];
    if (burn_ckpt_read(cfg->resume_path, &ck, why, sizeof why) != 0 ||
        burn_ckpt_check_config(&ck, cfg, why, sizeof why) != 0) {
      snprintf(msg, msg_cap, "checkpoint %s refused: %s", cfg->resume_path,
               why);
      return EXIT_RUNTIME;
    }
    st->next_iter = ck.next_iter;
    st->samples_done = ck.samples_done;
    st->checksum = ck.checksum;
  }
  if (cfg->stop_at != BURN_NO_STOP && cfg->stop_at < st->next_iter) {
    snprintf(msg, msg_cap,
             "--stop-at %" PRIu64 " is before iteration %" PRIu64
             ", where the resumed job starts",
             cfg->stop_at, st->next_iter);
    return EXIT_USAGE;
  }
  return 0;
}

int main(int argc, char **argv) {
  burn_config cfg;
  char why[600];
  if (burn_config_parse(argc, argv, &cfg, why, sizeof why) != 0) {
    if (burn_env_rank() == 0) fprintf(stderr, BURN_PROG ": %s\n", why);
    return EXIT_USAGE;
  }
  if (cfg.help) {
    if (burn_env_rank() == 0) fputs(burn_usage(), stdout);
    return 0;
  }

  double t_start = burn_now_s();
  int prc = pm_init();
  if (prc < 0)
    fprintf(stderr, BURN_PROG ": pm_init: %s; no events will be reported\n",
            pm_strerror(prc));
  MPI_Init(&argc, &argv);
  int rank = 0, nranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &nranks);

  burn_state st = {0, 0, 0};
  char ckpt_path[PATH_MAX + 32] = "";
  char msg[2048] = "";
  int status = 0;
  if (rank == 0)
    status = burn_setup_rank0(&cfg, &st, ckpt_path, sizeof ckpt_path, msg,
                              sizeof msg);
  uint64_t setup[4] = {(uint64_t)status, st.next_iter, st.samples_done,
                       st.checksum};
  MPI_Bcast(setup, 4, MPI_UINT64_T, 0, MPI_COMM_WORLD);
  status = (int)setup[0];
  st = (burn_state){setup[1], setup[2], setup[3]};

  uint64_t *buf = NULL;
  size_t nwords = (cfg.allreduce_bytes + 7) / 8;
  if (nwords < (size_t)SLOT_STOP0 + (size_t)nranks)
    nwords = (size_t)SLOT_STOP0 + (size_t)nranks;
  if (!status) {
    buf = calloc(nwords, sizeof *buf);
    if (!buf) {
      snprintf(msg, sizeof msg, "out of memory for a %zu-byte allreduce",
               nwords * sizeof *buf);
      fprintf(stderr, BURN_PROG ": %s\n", msg);
      MPI_Abort(MPI_COMM_WORLD, EXIT_RUNTIME);
    }
  }
  if (status) {
    if (rank == 0) fprintf(stderr, BURN_PROG ": %s\n", msg);
    goto out_finalize;
  }
  pm_init_end();

  const uint64_t ipe = burn_iters_per_epoch(&cfg);
  const uint64_t total = burn_total_iters(&cfg);
  const uint64_t start = st.next_iter;
  const burn_phase *last_phase = &cfg.phases[cfg.nphases - 1];
  const burn_phase *cur_phase = NULL;
  uint64_t agreed_stop = BURN_NO_STOP; /* set by the controller's request */
  double compute_s_sum = 0, comm_s_sum = 0, last_ckpt_s = burn_now_s();
  int stopped = 0;
  if (rank == 0 && !cfg.quiet)
    printf(BURN_PROG ": %d ranks, %" PRIu64 " iterations from %" PRIu64
                     " (%" PRIu64 " per epoch, batch %" PRIu64
                     ", %" PRIu64 " madds/sample)\n",
           nranks, total - start, start, ipe, cfg.batch, cfg.work_madds);

  /* The whole plan up front, so that the controller knows the work left
   * in every phase from the first PI; on resume each phase is reported
   * from where this run enters it. */
  for (int k = 0; k < cfg.nphases; k++) {
    const burn_phase *ph = &cfg.phases[k];
    uint64_t from = ph->first_iter > start ? ph->first_iter : start;
    uint64_t end = ph == last_phase ? total : ph->first_iter + ph->iters;
    if (end > from) pm_phase(ph->name, from, end - from);
  }
  for (uint64_t i = start; i < total && !status; i++) {
    const burn_phase *ph = burn_phase_of(&cfg, i);
    if (ph != cur_phase) {
      uint64_t end = ph == last_phase ? total : ph->first_iter + ph->iters;
      if (rank == 0 && !cfg.quiet)
        printf(BURN_PROG ": phase %s from iteration %" PRIu64 " (%" PRIu64
                         " iterations, %u%% work)\n",
               ph->name, i, end - i, ph->work_percent);
      cur_phase = ph;
    }
    uint64_t madds = cfg.work_madds * ph->work_percent / 100;

    pm_iter_begin(i);
    double t0 = burn_now_s();
    uint64_t epoch, lo, hi, acc = 0;
    burn_iter_slice(&cfg, i, rank, nranks, &epoch, &lo, &hi);
    for (uint64_t s = lo; s < hi; s++) acc += burn_sample_hash(s, epoch, madds);
    if (cfg.iter_sleep_ms) burn_sleep_ms(cfg.iter_sleep_ms);
    buf[SLOT_CHECKSUM] = acc;
    buf[SLOT_SAMPLES] = hi - lo;
    memset(buf + SLOT_STOP0, 0, (size_t)nranks * sizeof *buf);
    uint64_t req;
    if (agreed_stop == BURN_NO_STOP && pm_stop_requested(&req) == 1) {
      /* Never before the iteration under way: ranks cannot undo work. */
      uint64_t eff = req == UINT64_MAX || req < i ? i : req;
      if (eff > total) eff = total;
      buf[SLOT_STOP0 + rank] = eff + 1; /* 0 means "no request" */
    }
    for (size_t w = SLOT_STOP0 + (size_t)nranks; w < nwords; w++)
      buf[w] = acc + w; /* payload: real data, summed and dropped */
    double t1 = burn_now_s();
    burn_allreduce_sleepy(buf, (int)nwords);
    double t2 = burn_now_s();
    pm_iter_end(t1 - t0, t2 - t1, hi - lo);
    compute_s_sum += t1 - t0;
    comm_s_sum += t2 - t1;

    /* Every rank sees the same sums, so every rank takes the same
     * decisions below without talking again. */
    uint64_t want = burn_samples_before(&cfg, i + 1) -
                    burn_samples_before(&cfg, i);
    if (buf[SLOT_SAMPLES] != want) {
      if (rank == 0)
        fprintf(stderr,
                BURN_PROG ": iteration %" PRIu64 " processed %" PRIu64
                          " samples instead of %" PRIu64 "\n",
                i, buf[SLOT_SAMPLES], want);
      status = EXIT_RUNTIME;
      break;
    }
    st.checksum += buf[SLOT_CHECKSUM]; /* modulo 2^64: order-independent */
    st.samples_done += buf[SLOT_SAMPLES];
    st.next_iter = i + 1;
    if (agreed_stop == BURN_NO_STOP) {
      uint64_t m = 0;
      for (int r = 0; r < nranks; r++)
        if (buf[SLOT_STOP0 + r] > m) m = buf[SLOT_STOP0 + r];
      if (m) {
        agreed_stop = m - 1;
        if (rank == 0 && !cfg.quiet)
          printf(BURN_PROG ": stop requested; ranks agreed on iteration "
                           "%" PRIu64 "\n",
                 agreed_stop);
      }
    }
    if ((i + 1) % ipe == 0) {
      pm_epoch_end(i / ipe, i);
      if (rank == 0 && !cfg.quiet)
        printf(BURN_PROG ": epoch %" PRIu64 " done at iteration %" PRIu64
                         " (%.3f s)\n",
               i / ipe, i, burn_now_s() - t_start);
    }
    if (i == agreed_stop || i == cfg.stop_at) {
      stopped = 1;
      break;
    }
    if (rank == 0 && i + 1 < total &&
        ((cfg.ckpt_every_iters && (i + 1) % cfg.ckpt_every_iters == 0) ||
         (cfg.ckpt_every_seconds &&
          burn_now_s() - last_ckpt_s >= (double)cfg.ckpt_every_seconds))) {
      /* A failed periodic checkpoint costs nothing yet: go on, loudly. */
      (void)burn_checkpoint_save(ckpt_path, &cfg, &st, ipe, nranks);
      last_ckpt_s = burn_now_s();
    }
  }

  if (stopped) {
    int ck_status = 0;
    if (rank == 0 &&
        burn_checkpoint_save(ckpt_path, &cfg, &st, ipe, nranks) != 0)
      ck_status = EXIT_RUNTIME;
    /* All ranks exit alike: a stop without its checkpoint is a failure. */
    MPI_Bcast(&ck_status, 1, MPI_INT, 0, MPI_COMM_WORLD);
    status = ck_status;
  }
  if (rank == 0 && !status) {
    printf(BURN_PROG ": %s iterations=%" PRIu64 " samples=%" PRIu64
                     " checksum=0x%016" PRIx64 " ranks=%d run_iterations=%"
                     PRIu64 " compute_s=%.3f comm_s=%.3f wall_s=%.3f%s%s\n",
           stopped ? "stopped" : "done", st.next_iter, st.samples_done,
           st.checksum, nranks, st.next_iter - start, compute_s_sum,
           comm_s_sum, burn_now_s() - t_start, stopped ? " checkpoint=" : "",
           stopped ? ckpt_path : "");
  }
  fflush(stdout);

out_finalize:
  free(buf);
  pm_finalize();
  MPI_Finalize();
  return status;
}
