/* log.h - one-line diagnostics on stderr for the CLI and the controller.
 *
 * Every line starts with the program name ("paramount: "), so a user can
 * tell who speaks when several programs share a terminal.  Libraries use
 * pm_log only through the controller; libparamount has its own, quieter
 * path.
 */
#ifndef PM_LOG_H
#define PM_LOG_H

#include <stdarg.h>

typedef enum { LOG_ERR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 } log_level;

/* Lines above this level are not printed.  Default LOG_INFO; the
 * PARAMOUNT_LOG environment variable (error|warn|info|debug) overrides it
 * on the first call. */
void log_set_level(log_level level);
log_level log_get_level(void);

/* Sets the prefix ("paramount" by default); the string is borrowed and
 * must outlive every later log call. */
void log_set_prog(const char *prog);

void pm_log(log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void pm_vlog(log_level level, const char *fmt, va_list ap);

#define log_err(...) pm_log(LOG_ERR, __VA_ARGS__)
#define log_warn(...) pm_log(LOG_WARN, __VA_ARGS__)
#define log_info(...) pm_log(LOG_INFO, __VA_ARGS__)
#define log_debug(...) pm_log(LOG_DEBUG, __VA_ARGS__)

#endif
