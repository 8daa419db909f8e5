/* test.h - the tiny test harness every tests/test_*.c uses.
 *
 * Each TEST runs in its own child process (fork), so a crash or a leaked
 * fd in one case cannot hide or cause a failure in another.  Assertions
 * survive NDEBUG and print both values.  Usage:
 *
 *   TEST(name) { ASSERT_EQ_INT(1 + 1, 2); }
 *   ... more tests ...
 *   TEST_MAIN()
 *
 * `./test_x name` runs one case in-process (for gdb); `./test_x` runs all
 * and prints "N passed, N failed".
 */
#ifndef PM_TEST_H
#define PM_TEST_H

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef void (*test_fn)(void);
typedef struct {
  const char *name;
  test_fn fn;
} test_case;

#define TEST_MAX_CASES 256
extern test_case test_cases_[TEST_MAX_CASES];
extern int test_ncases_;

#define TEST(name)                                                             \
  static void test_##name(void);                                               \
  __attribute__((constructor)) static void test_reg_##name(void) {             \
    if (test_ncases_ < TEST_MAX_CASES)                                         \
      test_cases_[test_ncases_++] = (test_case){#name, test_##name};           \
  }                                                                            \
  static void test_##name(void)

#define TEST_FAIL_(...)                                                        \
  do {                                                                         \
    fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                            \
    fprintf(stderr, __VA_ARGS__);                                              \
    fprintf(stderr, "\n");                                                     \
    fflush(stderr);                                                            \
    _exit(1);                                                                  \
  } while (0)

#define ASSERT(cond)                                                           \
  do {                                                                         \
    if (!(cond)) TEST_FAIL_("assertion failed: %s", #cond);                    \
  } while (0)

#define ASSERT_EQ_INT(a, b)                                                    \
  do {                                                                         \
    long long a_ = (long long)(a), b_ = (long long)(b);                        \
    if (a_ != b_)                                                              \
      TEST_FAIL_("%s == %s failed: %lld != %lld", #a, #b, a_, b_);             \
  } while (0)

#define ASSERT_EQ_U64(a, b)                                                    \
  do {                                                                         \
    uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                           \
    if (a_ != b_)                                                              \
      TEST_FAIL_("%s == %s failed: %" PRIu64 " != %" PRIu64, #a, #b, a_, b_);  \
  } while (0)

#define ASSERT_OP_DBL(a, op, b)                                                \
  do {                                                                         \
    double a_ = (double)(a), b_ = (double)(b);                                 \
    if (!(a_ op b_))                                                           \
      TEST_FAIL_("%s %s %s failed: %g vs %g", #a, #op, #b, a_, b_);            \
  } while (0)

#define ASSERT_NEAR(a, b, tol)                                                 \
  do {                                                                         \
    double a_ = (double)(a), b_ = (double)(b), t_ = (double)(tol);             \
    if (!(a_ - b_ <= t_ && b_ - a_ <= t_))                                     \
      TEST_FAIL_("|%s - %s| <= %g failed: %g vs %g", #a, #b, t_, a_, b_);      \
  } while (0)

#define ASSERT_STREQ(a, b)                                                     \
  do {                                                                         \
    const char *a_ = (a), *b_ = (b);                                           \
    if (!a_ || !b_ || strcmp(a_, b_) != 0)                                     \
      TEST_FAIL_("%s == %s failed: \"%s\" != \"%s\"", #a, #b,                  \
                 a_ ? a_ : "(null)", b_ ? b_ : "(null)");                      \
  } while (0)

#define ASSERT_CONTAINS(hay, needle)                                           \
  do {                                                                         \
    const char *h_ = (hay), *n_ = (needle);                                    \
    if (!h_ || !strstr(h_, n_))                                                \
      TEST_FAIL_("%s does not contain \"%s\": \"%s\"", #hay, n_,               \
                 h_ ? h_ : "(null)");                                          \
  } while (0)

/* Seconds a single case may run before it is killed and counted failed;
 * a test file may define its own before including this header, and
 * TEST_TIMEOUT_S in the environment overrides both. */
#ifndef TEST_DEFAULT_TIMEOUT_S
#define TEST_DEFAULT_TIMEOUT_S 120
#endif

#define TEST_MAIN()                                                            \
  test_case test_cases_[TEST_MAX_CASES];                                       \
  int test_ncases_;                                                            \
  int main(int argc, char **argv) {                                            \
    if (argc > 1) {                                                            \
      for (int i = 0; i < test_ncases_; i++)                                   \
        if (strcmp(test_cases_[i].name, argv[1]) == 0) {                       \
          test_cases_[i].fn();                                                 \
          printf("ok %s\n", argv[1]);                                          \
          return 0;                                                            \
        }                                                                      \
      fprintf(stderr, "no test named %s\n", argv[1]);                          \
      return 2;                                                                \
    }                                                                          \
    const char *to = getenv("TEST_TIMEOUT_S");                                 \
    unsigned timeout = to ? (unsigned)atoi(to) : TEST_DEFAULT_TIMEOUT_S;       \
    int passed = 0, failed = 0;                                                \
    for (int i = 0; i < test_ncases_; i++) {                                   \
      fflush(stdout);                                                          \
      fflush(stderr);                                                          \
      pid_t pid = fork();                                                      \
      if (pid == 0) {                                                          \
        setpgid(0, 0);                                                         \
        alarm(timeout);                                                        \
        test_cases_[i].fn();                                                   \
        fflush(NULL);                                                          \
        _exit(0);                                                              \
      }                                                                        \
      int st = 0;                                                              \
      waitpid(pid, &st, 0);                                                    \
      kill(-pid, SIGKILL); /* whatever the case left behind */                 \
      if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {                             \
        printf("ok   %s\n", test_cases_[i].name);                              \
        passed++;                                                              \
      } else {                                                                 \
        if (WIFSIGNALED(st))                                                   \
          printf("FAIL %s (signal %d%s)\n", test_cases_[i].name,               \
                 WTERMSIG(st), WTERMSIG(st) == SIGALRM ? ", timeout" : "");    \
        else                                                                   \
          printf("FAIL %s (exit %d)\n", test_cases_[i].name,                   \
                 WEXITSTATUS(st));                                             \
        failed++;                                                              \
      }                                                                        \
    }                                                                          \
    printf("%d passed, %d failed\n", passed, failed);                          \
    return failed ? 1 : 0;                                                     \
  }

#endif
