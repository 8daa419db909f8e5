/* launch.h - starting a job: the mpirun command line, the child's
 * environment, the fork/exec with its exec error and pidfd, signal
 * forwarding and the exit code of a wait status.
 *
 * Shared by `paramount run` (src/controller/run.c) and `paramount record`
 * (src/cli/cmd_record.c), so both start jobs the same way.
 */
#ifndef PM_CONTROLLER_LAUNCH_H
#define PM_CONTROLLER_LAUNCH_H

#include <signal.h>
#include <sys/types.h>

/* What goes on an mpirun command line.  Every pointer is borrowed for
 * the call. */
typedef struct {
  const char *mpirun;        /* path or name; NULL: "mpirun" from PATH */
  unsigned long long np;     /* -np */
  const char *hosts;         /* --host list; NULL: none */
  int oversubscribe;         /* --oversubscribe: more ranks than cores */
  int allow_root_always;     /* --allow-run-as-root even when not root */
  const char *const *mca;    /* {key, value, key, value, ..., NULL}; NULL: none */
  const char *const *env;    /* names mpirun forwards to every rank (-x); NULL: none */
  const char *const *cmd;    /* the command and its arguments, NULL-terminated */
  /* One rank per host, each started in its own directory: host_v[i] and
   * wdir_v[i] for rank i (np of each); NULL: hosts/np as above. */
  const char *const *host_v;
  const char *const *wdir_v;
} launch_mpirun;

/* The argv: mpirun [--allow-run-as-root (when root, or asked)]
 * [--oversubscribe] [--host H] -np N [--mca K V]... [-x NAME]... CMD...
 * With host_v/wdir_v, one application context per rank instead, after
 * the global options: -np 1 --host H_i --wdir W_i [-x NAME]... CMD... ,
 * joined by ":" (Open MPI applies -x to one context only).  *out is a
 * NULL-terminated array of copies, freed with launch_strv_free; NULL on
 * failure.  0, PM_EINVAL (no command) or PM_ENOMEM. */
int launch_mpirun_argv(const launch_mpirun *m, char ***out);

/* A copy of our environment with each "NAME=value" of set replacing any
 * NAME already there (set: NULL-terminated).  Freed with
 * launch_strv_free.  0 or PM_ENOMEM (*out NULL). */
int launch_env(const char *const *set, char ***out);

/* Frees a NULL-terminated array of malloc'd strings; NULL is a no-op. */
void launch_strv_free(char **v);

typedef struct {
  char *const *argv;       /* argv[0] is looked up on PATH; borrowed */
  char *const *envp;       /* NULL: our environment; borrowed */
  int stdin_fd, stdout_fd, stderr_fd; /* -1: inherited */
  int new_pgrp;            /* its own process group: a terminal ^C reaches only us */
  int die_with_parent;     /* PR_SET_PDEATHSIG = SIGKILL: no job outlives us */
  int forward_signals;     /* the target of launch_forward_begin's handler */
  const char *exec_fail_prefix; /* non-NULL: the child says "PREFIX: cannot
                                 * execute X: why" on its stderr */
} launch_opts;

typedef struct {
  pid_t pid;
  int pidfd;      /* -1 when pidfd_open failed (errno in pidfd_errno) */
  int pidfd_errno;
  int exec_errno; /* 0: executed; else why not (the child exited 127) */
} launch_child;

/* Forks and executes o->argv.  SIGINT and SIGTERM stay blocked across
 * the fork, so one that arrives meanwhile is handled (or forwarded) after
 * the child exists rather than lost.  An exec failure comes back through
 * a close-on-exec pipe, so "not found" is told apart from a command that
 * exits 127.  Returns 0 with *c filled (the child must be waited for,
 * and c->pidfd closed, by the caller), or PM_ESYS (errno set) when no
 * child was made. */
int launch_spawn(const launch_opts *o, launch_child *c);

/* waitpid(pid) through EINTR.  0, or PM_ECHILD. */
int launch_wait(pid_t pid, int *status);

/* The exit code a wait status stands for, as shells give it: the exit
 * status, or 128 + N when killed by signal N. */
int launch_exit_code(int status);

/* Forwarding SIGINT and SIGTERM to the child spawned with
 * forward_signals, between begin and end.  A signal another process sent
 * to us alone is passed on; one the terminal generated (si_code
 * SI_KERNEL) already reached the whole foreground group, the child
 * included, and sending it twice would make mpirun abort instead of
 * shutting down. */
typedef struct {
  struct sigaction old_int, old_term;
} launch_forward;

void launch_forward_begin(launch_forward *f);
void launch_forward_end(launch_forward *f);

#endif
