/* run.h - the controller's run state machine: `paramount run CONFIG`.
 *
 * Provisions the initial cluster, launches the job under mpirun through
 * the provider, collects every rank's PIs, asks the policy what to do at
 * every interval, and reshapes the cluster make-before-break (new nodes
 * are set up while the job trains; then agreed stop, checkpoint, relaunch
 * on the new set, terminate the nodes that left).  When the job ends, or
 * fails, or the controller is interrupted, every node is terminated.
 */
#ifndef PM_CONTROLLER_RUN_H
#define PM_CONTROLLER_RUN_H

#include <stdio.h>

#include "controller/config.h"

typedef struct {
  const run_config *cfg;     /* borrowed for the call */
  const char *out_dir;       /* run directory; NULL: runs/<timestamp> */
  const char *paramount_bin; /* the provider's node-exec; NULL: next to us */
  const char *mpirun;        /* NULL: "mpirun" from PATH */
  int force;                 /* oversubscribing the host warns, not refuses */
  int status_tty;            /* -1: decide from isatty(stderr); 0 / 1 forced */
  FILE *out;                 /* summary; NULL: stdout */
  /* Resume the run in out_dir (which must hold one) instead of starting a
   * new one: its leftover nodes are terminated, its last cluster is
   * started again and the job continues from its last checkpoint. */
  int resume;
} run_opts;

typedef struct {
  char run_dir[PATH_MAX];
  int exit_status; /* what the CLI exits with: 0, the job's status, 1, 128+sig */
  int switches;    /* cluster changes completed */
  int launches;
  double total_s;
  double cost_usd;
} run_result;

/* Runs the whole job.  Returns 0 when the job completed; PM_ECHILD when
 * it failed (res->exit_status is its status); PM_EAGAIN when a signal
 * interrupted the run; another negative PM_E* when the controller could
 * not do its part (res->exit_status 1, or 2 for a configuration the
 * catalog refuses).  In every case no node is left running.  Installs
 * SIGINT/SIGTERM handlers for its duration. */
int run_execute(const run_opts *o, run_result *res);

/* Loads the config a run was started with: RUN/config.yaml (copied there
 * at the start), its relative paths anchored where the original file was,
 * and RUN/catalog.yaml (also copied) as its catalog.  0 or a PM_E* with
 * one line in err[cap], like run_config_load. */
int run_config_of(const char *run_dir, run_config *cfg, char *err, size_t cap);

#endif
