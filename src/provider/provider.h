/* provider.h - the one interface every node provider implements.
 *
 * A provider turns "give me 3 nodes of type c5.large" into running nodes
 * and back: local (cgroups on this machine), and later ssh, CLAP and a
 * simulator.  The controller sees only this ops table, so the policy that
 * decides which nodes to run never knows where they run.  Node state lives
 * on disk under the run directory and in its journal, never only in a
 * process, so that `paramount down` can always find what a dead controller
 * started.
 */
#ifndef PM_PROVIDER_H
#define PM_PROVIDER_H

#include <stddef.h>

#include "provider/catalog.h"

#define PROVIDER_ID_MAX 32

typedef enum {
  NODE_REQUESTED = 0, /* in the journal; resources being created */
  NODE_BOOTING,       /* resources exist; boot delay not over */
  NODE_BOOTED,        /* can run commands; not yet staged */
  NODE_READY,         /* booted and staged: the job may start on it */
  NODE_TERMINATED,    /* everything it had is gone */
  NODE_FAILED,        /* creation failed half-way; `down` still cleans it */
} provider_node_state;

/* One node as the provider last saw it.  Timestamps are Unix seconds
 * (CLOCK_REALTIME, comparable across processes); 0 means "not yet". */
typedef struct {
  char id[PROVIDER_ID_MAX];       /* a valid host name: "n1", "n2", ... */
  char type[CATALOG_NAME_MAX];    /* catalog type name */
  provider_node_state state;
  double requested_s, booted_s, staged_s, ready_s, terminated_s;
  double price_usd_per_hour;
  double billing_granularity_s, billing_minimum_s;
  double cpu_fraction;            /* host cores this node may use */
  unsigned threads;               /* threads its processes are told to use */
  double stage_bytes;             /* bytes copied by the last stage */
  double stage_s;                 /* seconds that copy took (staged_s - booted_s
                                     also counts waiting for a turn) */
  double cpu_used_s;              /* CPU seconds its processes used; -1: unknown */
  char throttle[16];              /* local: "cgroup-v1", "cgroup-v2", "dutycycle" */
} provider_node;

typedef struct provider provider;

/* Options common to all providers; every pointer is borrowed for the
 * duration of provider_open only (the provider copies what it keeps). */
typedef struct {
  const char *run_dir;      /* absolute; must exist */
  const catalog *cat;       /* borrowed for the provider's whole life */
  const char *paramount_bin; /* for exec_argv/mpi_agent; NULL: next to us */
  int force;                /* oversubscribing the host warns, not refuses */
} provider_opts;

typedef struct {
  const char *name;
  /* Requests `count` nodes of `type`.  Each is journalled (and synced)
   * before anything is created.  Returns once the nodes exist and are
   * booting; boot completes in the background (see wait_booted).  out[]
   * (count entries) receives the nodes.  All or nothing: on failure the
   * nodes created so far are terminated. */
  int (*start)(provider *p, const char *type, unsigned count, provider_node *out);
  /* Terminates one node: kills every process it runs, frees its resources,
   * journals it.  Idempotent: a node already gone is 0.  *did (may be
   * NULL) is set to 1 when something was actually removed. */
  int (*stop)(provider *p, const char *id, int *did);
  /* Every node the run ever had (journal and records), in id order.
   * *out is malloc'd, freed by the caller with free(). */
  int (*list)(provider *p, provider_node **out, size_t *n);
  /* Refreshes one node; returns 1 if it exists and can run commands, 0 if
   * not (booting, terminated), negative on error.  *out may be NULL. */
  int (*alive)(provider *p, const char *id, provider_node *out);
  /* Blocks until the node has booted (or timeout_s passes: PM_ETIMEDOUT). */
  int (*wait_booted)(provider *p, const char *id, double timeout_s);
  /* Copies files onto a booted node (real I/O, timed), then marks it
   * ready.  n == 0 just marks it ready.  Waits for the boot first. */
  int (*stage)(provider *p, const char *id, const char *const *paths, size_t n);
  /* The argv (NULL-terminated, malloc'd, freed with provider_argv_free) that
   * runs cmd[] (NULL-terminated) on the node. */
  int (*exec_argv)(provider *p, const char *id, char *const *cmd, char ***out);
  /* The command Open MPI runs as its rsh agent (--mca plm_rsh_agent), into
   * buf[cap].  Host names given to mpirun are node ids. */
  int (*mpi_agent)(provider *p, char *buf, size_t cap);
  /* The node's working directory as its processes see it (where stage
   * puts files), into buf[cap]; a job's ranks start there.  May be NULL:
   * ranks then start in mpirun's directory. */
  int (*workdir)(provider *p, const char *id, char *buf, size_t cap);
  void (*close)(provider *p);
} provider_ops;

struct provider {
  const provider_ops *ops;
  void *impl;
  char err[1024]; /* detail of the last failure, one line */
};

/* Opens the provider `name` ("local").  *out is NULL on failure and err
 * (cap bytes) says why. */
int provider_open(const char *name, const provider_opts *o, provider **out,
                  char *err, size_t cap);
void provider_close(provider *p); /* NULL is a no-op */

void provider_argv_free(char **argv);

const char *provider_state_name(provider_node_state s);
/* -1 for an unknown name. */
int provider_state_parse(const char *name);

/* What the node has cost so far: billed from its request to its
 * termination (or now_s), rounded up to its billing granularity, at least
 * its billing minimum. */
double provider_node_cost_usd(const provider_node *n, double now_s);

/* The run directory `arg` names (made absolute), or when arg is NULL the
 * newest run under ./runs that has a journal.  A directory without
 * journal.jsonl is refused.  err says why on failure. */
int provider_run_dir_resolve(const char *arg, char *dir, size_t cap, char *err,
                             size_t ecap);

/* ---- local provider internals the CLI needs ------------------------- */

int provider_local_open(const provider_opts *o, provider **out, char *err,
                        size_t cap);

/* `paramount node-exec`: replaces the calling process with cmd[] inside
 * node `id` of run_dir (its cgroup, its directory, its environment).
 * Returns only on failure, with err set. */
int provider_local_exec(const char *run_dir, const char *id, char *const *cmd,
                        char *err, size_t cap);

/* Terminates every node of run_dir that the journal or the node records
 * know, calling report(id, what, ud) once per node with a short
 * description of what was done ("terminated: 3 processes killed, 2 cgroups
 * removed" or "already terminated").  Idempotent.  Needs no catalog. */
typedef void (*provider_down_cb)(const char *id, const char *what, void *ud);
int provider_local_down(const char *run_dir, provider_down_cb report, void *ud,
                        char *err, size_t cap);

/* Reads the node records of run_dir without a catalog (for `nodes`). */
int provider_local_list(const char *run_dir, provider_node **out, size_t *n,
                        char *err, size_t cap);

#endif
