/* log.c - see log.h.  Each line is formatted into one buffer and written
 * with one write(2), so lines from several processes sharing stderr do not
 * interleave mid-line. */
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static log_level g_level = LOG_INFO;
static int g_level_set;
static const char *g_prog = "paramount";

void log_set_level(log_level level) {
  g_level = level;
  g_level_set = 1;
}

static void level_from_env(void) {
  if (g_level_set) return;
  g_level_set = 1;
  const char *e = getenv("PARAMOUNT_LOG");
  if (!e) return;
  if (!strcasecmp(e, "error")) g_level = LOG_ERR;
  else if (!strcasecmp(e, "warn")) g_level = LOG_WARN;
  else if (!strcasecmp(e, "info")) g_level = LOG_INFO;
  else if (!strcasecmp(e, "debug")) g_level = LOG_DEBUG;
}

log_level log_get_level(void) {
  level_from_env();
  return g_level;
}

void log_set_prog(const char *prog) { g_prog = prog ? prog : "paramount"; }

void pm_vlog(log_level level, const char *fmt, va_list ap) {
  level_from_env();
  if (level > g_level) return;
  static const char *const tags[] = {"error: ", "warning: ", "", "debug: "};
  char line[2048];
  int n = snprintf(line, sizeof line, "%s: %s", g_prog, tags[level]);
  if (n < 0) return;
  if ((size_t)n < sizeof line) {
    int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    if (m > 0) n += m;
  }
  if ((size_t)n >= sizeof line - 1) n = (int)sizeof line - 2;
  line[n++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, (size_t)n);
  (void)w;
}

void pm_log(log_level level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pm_vlog(level, fmt, ap);
  va_end(ap);
}
