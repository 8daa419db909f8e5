/* journal.h - the run's journal: journal.jsonl in the run directory.
 *
 * One JSON object per line, each with "ev" (what happened) and "t" (Unix
 * seconds, float).  It is the run's memory: nodes are written to it before
 * they exist, so `paramount down` can always find and remove them, and
 * reports are rebuilt from it alone.  Appends are buffered; a record that
 * must survive a crash is followed by journal_sync().
 */
#ifndef PM_JOURNAL_H
#define PM_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

struct json_object;
typedef struct journal journal;

/* Opens (creating if needed) run_dir/journal.jsonl for appending.
 * *out is NULL on failure. */
int journal_open(const char *run_dir, journal **out);

/* Appends rec (borrowed; not freed).  Sets "t" to now when rec has none.
 * rec must have a string "ev".  Buffered: visible to readers after
 * journal_flush, durable after journal_sync. */
int journal_append(journal *j, struct json_object *rec);

/* Appends one record the caller rendered itself: line[0..len) is one JSON
 * object with "ev" and "t", without the newline (not checked: for hot
 * paths, such as the intake's PI records, that bypass json-c). */
int journal_append_line(journal *j, const char *line, size_t len);

/* Writes the buffer out (one write(2) per call, O_APPEND). */
int journal_flush(journal *j);

/* journal_flush, then fsync. */
int journal_sync(journal *j);

/* Bytes and records appended since open. */
uint64_t journal_bytes(const journal *j);
uint64_t journal_records(const journal *j);

/* Flushes and closes; NULL is a no-op. */
void journal_close(journal *j);

/* Calls cb for every complete record of run_dir/journal.jsonl, in order.
 * The object is borrowed for the duration of the call.  A last line
 * without its newline (a crash mid-write) is skipped with a warning in
 * *warn (static string) and is not an error; any other malformed line is
 * PM_EPARSE with its line number in *bad_line.  A non-zero return from cb
 * stops the walk and is returned. */
typedef int (*journal_cb)(struct json_object *rec, void *ud);
int journal_read(const char *run_dir, journal_cb cb, void *ud,
                 long *bad_line, const char **warn);

#endif
