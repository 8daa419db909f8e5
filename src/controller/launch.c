/* launch.c - starting a job under mpirun (or directly), one way for
 * `paramount run` and `paramount record`: the command line, the child's
 * environment, fork/exec with the exec error reported back, its pidfd,
 * signal forwarding and exit codes.  See launch.h.
 */
#include "controller/launch.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "paramount.h"

extern char **environ;

void launch_strv_free(char **v) {
  for (size_t i = 0; v && v[i]; i++) free(v[i]);
  free(v);
}

int launch_mpirun_argv(const launch_mpirun *m, char ***out) {
  *out = NULL;
  if (!m->cmd || !m->cmd[0] || (!m->host_v != !m->wdir_v)) return PM_EINVAL;
  size_t nctx = m->host_v ? m->np : 1, ncmd = 0, nenv = 0;
  if (!nctx) return PM_EINVAL;
  for (size_t i = 0; i < nctx && m->host_v; i++)
    if (!m->host_v[i] || !m->wdir_v[i]) return PM_EINVAL;
  while (m->cmd[ncmd]) ncmd++;
  while (m->env && m->env[nenv]) nenv++;
  size_t n = 8;
  for (size_t i = 0; m->mca && m->mca[i]; i++) n += 2;
  n += nctx * (8 + 2 * nenv + ncmd);
  char **v = calloc(n, sizeof *v);
  if (!v) return PM_ENOMEM;
  char np[24];
  snprintf(np, sizeof np, "%llu", m->host_v ? 1ull : m->np);
  size_t k = 0;
  v[k++] = strdup(m->mpirun ? m->mpirun : "mpirun");
  /* Open MPI refuses root without it; nodes are cgroups of this host */
  if (m->allow_root_always || geteuid() == 0) v[k++] = strdup("--allow-run-as-root");
  if (m->oversubscribe) v[k++] = strdup("--oversubscribe");
  for (size_t i = 0; m->mca && m->mca[i] && m->mca[i + 1]; i += 2) {
    v[k++] = strdup("--mca");
    v[k++] = strdup(m->mca[i]);
    v[k++] = strdup(m->mca[i + 1]);
  }
  for (size_t c = 0; c < nctx; c++) {
    if (c) v[k++] = strdup(":");
    const char *host = m->host_v ? m->host_v[c] : m->hosts;
    if (host) {
      v[k++] = strdup("--host");
      v[k++] = strdup(host);
    }
    if (m->wdir_v) {
      v[k++] = strdup("--wdir");
      v[k++] = strdup(m->wdir_v[c]);
    }
    v[k++] = strdup("-np");
    v[k++] = strdup(np);
    for (size_t i = 0; i < nenv; i++) {
      v[k++] = strdup("-x");
      v[k++] = strdup(m->env[i]);
    }
    for (size_t i = 0; i < ncmd; i++) v[k++] = strdup(m->cmd[i]);
  }
  for (size_t i = 0; i < k; i++)
    if (!v[i]) {
      for (size_t j = 0; j < k; j++) free(v[j]);
      free(v);
      return PM_ENOMEM;
    }
  *out = v;
  return 0;
}

/* Whether environment entry e ("NAME=value") sets the same name as s. */
static int launch_env_same(const char *e, const char *s) {
  size_t n = strcspn(s, "=");
  return !strncmp(e, s, n) && e[n] == '=';
}

int launch_env(const char *const *set, char ***out) {
  *out = NULL;
  size_t n = 0, ns = 0, k = 0;
  while (environ[n]) n++;
  while (set && set[ns]) ns++;
  char **e = calloc(n + ns + 1, sizeof *e);
  if (!e) return PM_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    int replaced = 0;
    for (size_t j = 0; j < ns && !replaced; j++) replaced = launch_env_same(environ[i], set[j]);
    if (!replaced && !(e[k++] = strdup(environ[i]))) goto nomem;
  }
  for (size_t j = 0; j < ns; j++)
    if (!(e[k++] = strdup(set[j]))) goto nomem;
  *out = e;
  return 0;
nomem:
  launch_strv_free(e);
  return PM_ENOMEM;
}

/* ---- the child ------------------------------------------------------- */

static volatile sig_atomic_t launch_fwd_pid;

static void launch_forward_signal(int sig, siginfo_t *si, void *uctx) {
  (void)uctx;
  pid_t p = (pid_t)launch_fwd_pid;
  if (p > 0 && (!si || si->si_code != SI_KERNEL)) kill(p, sig);
}

void launch_forward_begin(launch_forward *f) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = launch_forward_signal;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &f->old_int);
  sigaction(SIGTERM, &sa, &f->old_term);
}

void launch_forward_end(launch_forward *f) {
  sigaction(SIGINT, &f->old_int, NULL);
  sigaction(SIGTERM, &f->old_term, NULL);
  launch_fwd_pid = 0;
}

/* In the child, between fork and exec: only async-signal-safe calls. */
static void launch_child_exec(const launch_opts *o, pid_t parent, const sigset_t *mask,
                              int errfd) {
  if (o->new_pgrp) setpgid(0, 0);
  if (o->die_with_parent) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127); /* it died before prctl took */
  }
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  sigprocmask(SIG_SETMASK, mask, NULL);
  if (o->stdin_fd >= 0) dup2(o->stdin_fd, 0);
  if (o->stdout_fd >= 0) dup2(o->stdout_fd, 1);
  if (o->stderr_fd >= 0) dup2(o->stderr_fd, 2);
  execvpe(o->argv[0], o->argv, o->envp ? o->envp : environ);
  int e = errno;
  ssize_t w = write(errfd, &e, sizeof e);
  (void)w;
  if (o->exec_fail_prefix)
    dprintf(2, "%s: cannot execute %s: %s\n", o->exec_fail_prefix, o->argv[0], strerror(e));
  _exit(127);
}

int launch_spawn(const launch_opts *o, launch_child *c) {
  memset(c, 0, sizeof *c);
  c->pidfd = -1;
  int pfd[2];
  if (pipe2(pfd, O_CLOEXEC) != 0) return PM_ESYS;
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  sigprocmask(SIG_BLOCK, &block, &old);
  fflush(NULL); /* nothing buffered is written twice */
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(pfd[0]);
    close(pfd[1]);
    errno = e;
    return PM_ESYS;
  }
  if (pid == 0) {
    close(pfd[0]);
    launch_child_exec(o, parent, &old, pfd[1]);
  }
  close(pfd[1]);
  if (o->new_pgrp) setpgid(pid, pid); /* both sides: whichever runs first */
  if (o->forward_signals) launch_fwd_pid = pid;
  sigprocmask(SIG_SETMASK, &old, NULL);
  int e = 0;
  ssize_t n;
  do {
    n = read(pfd[0], &e, sizeof e);
  } while (n < 0 && errno == EINTR);
  close(pfd[0]);
  c->pid = pid;
  if (n == (ssize_t)sizeof e) c->exec_errno = e;
  c->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (c->pidfd < 0) c->pidfd_errno = errno;
  return 0;
}

int launch_wait(pid_t pid, int *status) {
  while (waitpid(pid, status, 0) < 0)
    if (errno != EINTR) return PM_ECHILD;
  return 0;
}

int launch_exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}
