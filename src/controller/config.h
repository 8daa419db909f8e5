/* config.h - the run configuration: one YAML file that says where nodes
 * come from (provider, catalog), which cluster to start, which job to run
 * and how to resume it, and which policy reshapes the cluster.
 *
 * `paramount run` and `paramount up` read it through run_config_load, so
 * both verbs accept the same file and report every mistake the same way:
 * "FILE:LINE: field 'x.y': what is wrong" (docs/config.md).
 */
#ifndef PM_CONTROLLER_CONFIG_H
#define PM_CONTROLLER_CONFIG_H

#include <limits.h>
#include <stddef.h>

#include "provider/catalog.h"

#define RUN_CONFIG_MAX_BYTES (1024 * 1024)
#define RUN_CONFIG_GROUPS_MAX 32
#define RUN_CONFIG_STAGE_MAX 64
#define RUN_CONFIG_NODES_MAX 256
#define RUN_CONFIG_ARGS_MAX 64  /* argv elements of job.command / job.resume */
#define RUN_CONFIG_ARG_MAX 1024 /* bytes of one argv element, NUL included */

/* The literal token in job.resume replaced by the checkpoint's path. */
#define RUN_CONFIG_CHECKPOINT_TOKEN "{checkpoint}"

/* job.heartbeat_timeout_s: its default, and its floor (libparamount sends
 * a HEARTBEAT about once a second; below two of them a healthy rank on a
 * throttled node would be declared lost). */
#define RUN_CONFIG_HEARTBEAT_TIMEOUT_S 15.0
#define RUN_CONFIG_HEARTBEAT_TIMEOUT_MIN_S 2.0

typedef struct {
  char type[CATALOG_NAME_MAX];
  unsigned count;
  size_t line; /* of the entry in the file, for later checks */
} run_config_group;

typedef enum { RUN_SCALING_GLOBAL_BATCH = 0, RUN_SCALING_RANK_BATCH = 1 } run_scaling;

typedef struct {
  char path[PATH_MAX]; /* the file it was loaded from */
  char provider[32];   /* "local" */
  char catalog[PATH_MAX]; /* resolved against the file's directory; "" = default */
  int force;
  run_config_group groups[RUN_CONFIG_GROUPS_MAX];
  size_t ngroups;
  size_t cluster_line;
  char stage[RUN_CONFIG_STAGE_MAX][PATH_MAX];
  size_t nstage;

  /* job: */
  int has_job;
  size_t job_line;
  char command[RUN_CONFIG_ARGS_MAX][RUN_CONFIG_ARG_MAX];
  size_t ncommand;
  char resume[RUN_CONFIG_ARGS_MAX][RUN_CONFIG_ARG_MAX];
  size_t nresume;
  unsigned long long iterations; /* 0: from the app's phase declarations */
  double batch;                  /* samples per PI (see scaling); 0: measured */
  run_scaling scaling;
  double stop_timeout_s;         /* stop request -> job exit, before it is killed */
  /* The job checkpoints at least every this many iterations on its own
   * (burn: --checkpoint-every K, in command); 0: unknown.  A lost node
   * costs at most this many iterations; run warns when more were lost. */
  unsigned long long checkpoint_every;
  /* Where the job writes its checkpoints (resolved against the file's
   * directory); "" = the run directory.  A checkpoint a rank reports
   * outside it is refused and never resumed from. */
  char checkpoint_dir[PATH_MAX];
  /* A rank of the running job from which nothing arrived for this long
   * (after its first frame, before its FINALIZE) marks its node lost
   * (docs/faults.md). */
  double heartbeat_timeout_s;

  /* policy: */
  int has_policy;
  char policy_name[16];  /* paramount | static | clap-bot */
  char objective[24];    /* min-cost | min-time | min-cost-deadline | min-time-budget */
  double deadline_s;     /* after the run's start; 0: none */
  double budget_usd;     /* 0: none */
  int min_nodes, max_nodes; /* 0: the initial node count */
  double margin;         /* relative gain a switch needs */
  double confidence;     /* of the speed estimates' intervals */
  double interval_s;     /* between decisions */
  unsigned early_pis;    /* the policy's early rule: PIs looked at, 0: off */
  double early_margin;   /* relative gain the early rule needs */
} run_config;

/* Reads and validates the file at path into *cfg (caller-owned, large:
 * allocate it statically or on the heap).  Defaults fill what the file
 * leaves out.  On failure returns PM_EPARSE (or PM_ENOENT/PM_EIO/
 * PM_ENOMEM) and err[cap] holds one line "FILE:LINE: field 'x.y': what is
 * wrong"; *cfg is then unspecified. */
int run_config_load(const char *path, run_config *cfg, char *err, size_t cap);

/* Same, from a string; `name` stands for the file in messages and its
 * directory anchors relative paths. */
int run_config_parse(const char *name, const char *text, size_t len, run_config *cfg,
                     char *err, size_t cap);

/* Checks the cluster against a catalog: every type exists and the node
 * count is within bounds.  0 or PM_EPARSE with err like run_config_load. */
int run_config_check_catalog(const run_config *cfg, const catalog *cat, char *err,
                             size_t cap);

/* Total nodes of the initial cluster. */
unsigned run_config_nodes(const run_config *cfg);

#endif
