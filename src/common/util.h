/* util.h - small helpers the CLI, controller and providers share: clocks,
 * run directories, run tokens, atomic file writes.
 */
#ifndef PM_UTIL_H
#define PM_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Nanoseconds of CLOCK_REALTIME (comparable across processes and nodes)
 * and of CLOCK_MONOTONIC (for durations within one process). */
uint64_t clock_real_ns(void);
uint64_t clock_mono_ns(void);
double clock_real_s(void);

/* mkdir -p with mode 0755; 0 or PM_ESYS (errno kept). */
int util_mkdir_p(const char *path);

/* Creates the run directory: `out` when given (created if missing; an
 * existing non-empty directory holding a journal is refused with
 * PM_EEXIST), else a new runs/YYYYmmdd-HHMMSS-XXXX under the current
 * directory.  Writes the absolute path into path[cap]. */
int util_run_dir_create(const char *out, char *path, size_t cap);

/* 32 lowercase hex characters from getrandom(2), NUL-terminated into
 * tok[33]. */
int util_token_generate(char tok[33]);

/* Writes len bytes to path atomically: path.tmp.PID, fsync, rename, fsync
 * of the directory.  0 or a negative PM_E*; on failure path is untouched. */
int util_write_file_atomic(const char *path, const void *data, size_t len);

/* Reads a whole file (at most max_bytes) into a malloc'd NUL-terminated
 * buffer the caller frees.  PM_ENOENT, PM_ETOOBIG, PM_EIO. */
int util_read_file(const char *path, size_t max_bytes, char **out, size_t *len);

/* Absolute path of the running executable's directory (from
 * /proc/self/exe), so the CLI can find its sibling programs. */
int util_self_dir(char *dir, size_t cap);

#endif
