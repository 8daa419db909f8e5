/* test_launch.c - how `paramount run` and `record` start jobs
 * (src/controller/launch.c): the mpirun argv, the child's environment,
 * exec errors told apart from exit 127, process groups, signal
 * forwarding and exit codes, on real child processes (/bin/sh, env).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <time.h>

#include "controller/launch.h"
#include "paramount.h"
#include "test.h"

static size_t strv_len(char **v) {
  size_t n = 0;
  while (v[n]) n++;
  return n;
}

/* The argv joined with spaces, for one comparison. */
static void strv_join(char **v, char *out, size_t cap) {
  size_t off = 0;
  out[0] = '\0';
  for (size_t i = 0; v[i] && off < cap; i++)
    off += (size_t)snprintf(out + off, cap - off, "%s%s", i ? " " : "", v[i]);
}

TEST(mpirun_argv_of_run_and_record) {
  static const char *const cmd[] = {"app", "--resume", "/ck", NULL};
  static const char *const mca[] = {"btl", "self,tcp", "plm_rsh_agent", "x y", NULL};
  static const char *const env[] = {"A", "B", NULL};
  launch_mpirun m = {.np = 3, .hosts = "n1,n2,n3", .mca = mca, .env = env, .cmd = cmd};
  char **v = NULL, got[1024];
  ASSERT_EQ_INT(launch_mpirun_argv(&m, &v), 0);
  strv_join(v, got, sizeof got);
  const char *root = geteuid() == 0 ? " --allow-run-as-root" : "";
  char want[1024];
  snprintf(want, sizeof want,
           "mpirun%s --mca btl self,tcp --mca plm_rsh_agent x y --host n1,n2,n3 -np 3 "
           "-x A -x B app --resume /ck", root);
  ASSERT_STREQ(got, want);
  /* "x y" stays one argument: no shell ever splits it */
  ASSERT_STREQ(v[6 + (root[0] != 0)], "x y");
  launch_strv_free(v);

  /* One context per rank, each in its node's directory; -x repeated,
   * since Open MPI applies it to one context only. */
  static const char *const hv[] = {"n1", "n2"};
  static const char *const wv[] = {"/r/nodes/n1/work", "/r/nodes/n 2/work"};
  launch_mpirun p = {.np = 2, .mca = mca, .env = env, .cmd = cmd, .host_v = hv, .wdir_v = wv};
  ASSERT_EQ_INT(launch_mpirun_argv(&p, &v), 0);
  strv_join(v, got, sizeof got);
  snprintf(want, sizeof want,
           "mpirun%s --mca btl self,tcp --mca plm_rsh_agent x y "
           "--host n1 --wdir /r/nodes/n1/work -np 1 -x A -x B app --resume /ck : "
           "--host n2 --wdir /r/nodes/n 2/work -np 1 -x A -x B app --resume /ck", root);
  ASSERT_STREQ(got, want);
  launch_strv_free(v);
  launch_mpirun bad = p;
  bad.wdir_v = NULL; /* hosts without directories */
  v = (char **)1;
  ASSERT_EQ_INT(launch_mpirun_argv(&bad, &v), PM_EINVAL);
  ASSERT(v == NULL);

  launch_mpirun r = {.mpirun = "/usr/bin/mpirun", .np = 2, .oversubscribe = 1,
                     .allow_root_always = 1, .cmd = cmd};
  ASSERT_EQ_INT(launch_mpirun_argv(&r, &v), 0);
  strv_join(v, got, sizeof got);
  ASSERT_STREQ(got, "/usr/bin/mpirun --allow-run-as-root --oversubscribe -np 2 app --resume /ck");
  ASSERT_EQ_INT(strv_len(v), 8);
  launch_strv_free(v);
}

TEST(mpirun_argv_needs_a_command) {
  static const char *const none[] = {NULL};
  launch_mpirun m = {.np = 1, .cmd = none};
  char **v = (char **)1;
  ASSERT_EQ_INT(launch_mpirun_argv(&m, &v), PM_EINVAL);
  ASSERT(v == NULL);
  m.cmd = NULL;
  ASSERT_EQ_INT(launch_mpirun_argv(&m, &v), PM_EINVAL);
  launch_strv_free(NULL); /* a no-op */
}

/* Runs argv with stdout into a pipe; returns what it printed (static). */
static const char *spawn_output(const launch_opts *base, int *code) {
  static char buf[65536];
  int p[2];
  ASSERT_EQ_INT(pipe(p), 0);
  launch_opts o = *base;
  o.stdout_fd = p[1];
  launch_child c;
  ASSERT_EQ_INT(launch_spawn(&o, &c), 0);
  close(p[1]);
  ASSERT_EQ_INT(c.exec_errno, 0);
  ASSERT(c.pidfd >= 0);
  size_t len = 0;
  ssize_t n;
  while ((n = read(p[0], buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)n;
  buf[len] = '\0';
  close(p[0]);
  struct pollfd pf = {.fd = c.pidfd, .events = POLLIN};
  ASSERT_EQ_INT(poll(&pf, 1, 10000), 1); /* the pidfd tells the exit */
  close(c.pidfd);
  int st = 0;
  ASSERT_EQ_INT(launch_wait(c.pid, &st), 0);
  *code = launch_exit_code(st);
  return buf;
}

TEST(env_replaces_and_adds_names) {
  setenv("PARAMOUNT_TOKEN", "old-token", 1);
  setenv("PARAMOUNT_TOKENX", "kept", 1);
  const char *const set[] = {"PARAMOUNT_TOKEN=new", "PM_TEST_ADDED=a=b", NULL};
  char **envp = NULL;
  ASSERT_EQ_INT(launch_env(set, &envp), 0);
  char *argv[] = {"env", NULL};
  launch_opts o = {.argv = argv, .envp = envp, .stdin_fd = -1, .stderr_fd = -1};
  int code = -1;
  const char *out = spawn_output(&o, &code);
  ASSERT_EQ_INT(code, 0);
  ASSERT_CONTAINS(out, "\nPARAMOUNT_TOKEN=new\n");
  ASSERT(strstr(out, "old-token") == NULL);
  ASSERT_CONTAINS(out, "PARAMOUNT_TOKENX=kept\n"); /* a longer name is another name */
  ASSERT_CONTAINS(out, "PM_TEST_ADDED=a=b\n");
  launch_strv_free(envp);
}

TEST(exec_failure_is_not_exit_127) {
  char *argv[] = {"/nonexistent/pm-no-such-program", NULL};
  int p[2];
  ASSERT_EQ_INT(pipe(p), 0);
  launch_opts o = {.argv = argv, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = p[1],
                   .exec_fail_prefix = "paramount: test"};
  launch_child c;
  ASSERT_EQ_INT(launch_spawn(&o, &c), 0);
  close(p[1]);
  ASSERT_EQ_INT(c.exec_errno, ENOENT);
  char msg[512] = "";
  ssize_t n = read(p[0], msg, sizeof msg - 1);
  close(p[0]);
  ASSERT(n > 0);
  msg[n] = '\0';
  ASSERT_CONTAINS(msg, "paramount: test: cannot execute /nonexistent/pm-no-such-program: ");
  int st = 0;
  ASSERT_EQ_INT(launch_wait(c.pid, &st), 0);
  ASSERT_EQ_INT(launch_exit_code(st), 127);
  if (c.pidfd >= 0) close(c.pidfd);

  /* a command that itself exits 127 executed fine */
  char *sh[] = {"/bin/sh", "-c", "exit 127", NULL};
  o.argv = sh;
  o.stderr_fd = -1;
  o.exec_fail_prefix = NULL;
  ASSERT_EQ_INT(launch_spawn(&o, &c), 0);
  ASSERT_EQ_INT(c.exec_errno, 0);
  ASSERT_EQ_INT(launch_wait(c.pid, &st), 0);
  ASSERT_EQ_INT(launch_exit_code(st), 127);
  if (c.pidfd >= 0) close(c.pidfd);
  ASSERT_EQ_INT(launch_wait(c.pid, &st), PM_ECHILD); /* already reaped */
}

TEST(exit_codes_and_process_group) {
  char *argv[] = {"/bin/sh", "-c", "cut -d' ' -f5 /proc/$$/stat; kill -TERM $$", NULL};
  launch_opts o = {.argv = argv, .stdin_fd = -1, .stderr_fd = -1, .new_pgrp = 1,
                   .die_with_parent = 1};
  int code = -1;
  const char *out = spawn_output(&o, &code);
  ASSERT_EQ_INT(code, 128 + SIGTERM);
  long pgid = strtol(out, NULL, 10);
  ASSERT(pgid > 0);
  ASSERT(pgid != (long)getpgrp()); /* its own group: a ^C to ours misses it */
  char *ok[] = {"/bin/sh", "-c", "exit 3", NULL};
  o.argv = ok;
  o.new_pgrp = 0;
  out = spawn_output(&o, &code);
  ASSERT_EQ_INT(code, 3);
}

TEST(signals_are_forwarded_to_the_child) {
  /* the child reports SIGTERM by exiting 42; it is ready once it printed */
  char *argv[] = {"/bin/sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done",
                  NULL};
  int p[2];
  ASSERT_EQ_INT(pipe(p), 0);
  launch_forward f;
  launch_forward_begin(&f);
  launch_opts o = {.argv = argv, .stdin_fd = -1, .stdout_fd = p[1], .stderr_fd = -1,
                   .forward_signals = 1};
  launch_child c;
  ASSERT_EQ_INT(launch_spawn(&o, &c), 0);
  close(p[1]);
  char buf[16];
  ASSERT(read(p[0], buf, sizeof buf) > 0);
  close(p[0]);
  ASSERT_EQ_INT(kill(getpid(), SIGTERM), 0); /* to us; the handler passes it on */
  int st = 0;
  ASSERT_EQ_INT(launch_wait(c.pid, &st), 0);
  launch_forward_end(&f);
  ASSERT_EQ_INT(launch_exit_code(st), 42);
  if (c.pidfd >= 0) close(c.pidfd);
}

TEST_MAIN()
