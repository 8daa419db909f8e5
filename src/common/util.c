/* util.c - see util.h. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "paramount.h"

uint64_t clock_real_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t clock_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double clock_real_s(void) { return (double)clock_real_ns() / 1e9; }

int util_mkdir_p(const char *path) {
  char buf[PATH_MAX];
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof buf) {
    errno = ENAMETOOLONG;
    return PM_EINVAL;
  }
  memcpy(buf, path, n + 1);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return PM_ESYS;
    *p = '/';
  }
  if (mkdir(buf, 0755) != 0 && errno != EEXIST) return PM_ESYS;
  return 0;
}

int util_run_dir_create(const char *out, char *path, size_t cap) {
  char rel[PATH_MAX];
  if (out && *out) {
    if (strlen(out) >= sizeof rel) return PM_EINVAL;
    snprintf(rel, sizeof rel, "%s", out);
  } else {
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    uint16_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) r = (uint16_t)getpid();
    snprintf(rel, sizeof rel, "runs/%s-%04x", stamp, r);
  }
  int rc = util_mkdir_p(rel);
  if (rc) return rc;
  char jpath[PATH_MAX + 16];
  snprintf(jpath, sizeof jpath, "%s/journal.jsonl", rel);
  struct stat st;
  if (stat(jpath, &st) == 0 && st.st_size > 0) return PM_EEXIST;
  char abs[PATH_MAX];
  if (!realpath(rel, abs)) return PM_ESYS;
  if (strlen(abs) >= cap) return PM_EINVAL;
  memcpy(path, abs, strlen(abs) + 1);
  return 0;
}

int util_token_generate(char tok[33]) {
  unsigned char raw[16];
  size_t got = 0;
  while (got < sizeof raw) {
    ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return PM_ESYS;
    }
    got += (size_t)n;
  }
  for (int i = 0; i < 16; i++) snprintf(tok + 2 * i, 3, "%02x", raw[i]);
  tok[32] = '\0';
  return 0;
}

int util_write_file_atomic(const char *path, const void *data, size_t len) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >=
      (int)sizeof tmp)
    return PM_EINVAL;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return PM_ESYS;
  const char *p = data;
  size_t left = len;
  while (left > 0) {
    ssize_t n = write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      goto fail_fd;
    }
    p += n;
    left -= (size_t)n;
  }
  if (fsync(fd) != 0) goto fail_fd;
  if (close(fd) != 0) goto fail_tmp;
  if (rename(tmp, path) != 0) goto fail_tmp;
  /* The rename is durable only once the directory is synced. */
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == dir) slash[1] = '\0';
  else if (slash) *slash = '\0';
  else snprintf(dir, sizeof dir, ".");
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return 0;
fail_fd:
  close(fd);
fail_tmp:
  unlink(tmp);
  return PM_EIO;
}

int util_read_file(const char *path, size_t max_bytes, char **out, size_t *len) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return errno == ENOENT ? PM_ENOENT : PM_EIO;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap + 1);
  if (!buf) {
    fclose(f);
    return PM_ENOMEM;
  }
  for (;;) {
    if (n == cap) {
      if (cap >= max_bytes) {
        free(buf);
        fclose(f);
        return PM_ETOOBIG;
      }
      cap = cap * 2 > max_bytes ? max_bytes : cap * 2;
      char *nb = realloc(buf, cap + 1);
      if (!nb) {
        free(buf);
        fclose(f);
        return PM_ENOMEM;
      }
      buf = nb;
    }
    size_t r = fread(buf + n, 1, cap - n, f);
    n += r;
    if (r == 0) break;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    free(buf);
    return PM_EIO;
  }
  buf[n] = '\0';
  *out = buf;
  if (len) *len = n;
  return 0;
}

int util_self_dir(char *dir, size_t cap) {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return PM_ESYS;
  buf[n] = '\0';
  char *slash = strrchr(buf, '/');
  if (!slash) return PM_ESYS;
  *slash = '\0';
  if (strlen(buf) >= cap) return PM_EINVAL;
  memcpy(dir, buf, strlen(buf) + 1);
  return 0;
}
