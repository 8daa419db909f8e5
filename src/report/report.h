/* report.h - the run report: metrics.csv, report.json and report.html
 * rebuilt from a run directory's journal.jsonl alone.
 *
 * `paramount report RUN_DIR` calls report_build, and so do `record` and
 * `run` at their end, so every run leaves a report without a second step.
 * The journal is the only input: a report can always be rebuilt later.
 */
#ifndef PM_REPORT_H
#define PM_REPORT_H

#include <stddef.h>

typedef struct {
  /* Run directory of a comparison (ideal) run whose report.json gives the
   * ideal cost curve; NULL: the policy's prediction, when the journal has
   * one.  Borrowed for the call. */
  const char *ideal_dir;
  /* Where the three files go; NULL: the run directory itself. */
  const char *out_dir;
  /* Set to a static string when the journal was read with a warning (a
   * truncated last record); NULL otherwise.  Optional. */
  const char **warn;
} report_opts;

/* Reads run_dir/journal.jsonl and writes metrics.csv, report.json and
 * report.html (each atomically) into o->out_dir or run_dir.  o may be
 * NULL.  Returns 0 or a negative PM_E* with a one-line reason in err[cap]:
 * PM_ENOENT (no journal), PM_EPARSE (a malformed line, or a known event
 * with a bad field: the line is named; or not a Paramount journal),
 * PM_EIO, PM_ENOMEM. */
int report_build(const char *run_dir, const report_opts *o, char *err,
                 size_t cap);

#endif
