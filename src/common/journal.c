/* journal.c - see journal.h.  json-c renders each record; the buffer is
 * flushed whole with one write(2) on an O_APPEND descriptor, so two
 * processes appending to the same journal (the controller and `paramount
 * down`) never interleave inside a line. */
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "paramount.h"
#include "util.h"

#define JOURNAL_BUF_CAP (256 * 1024)
#define JOURNAL_LINE_MAX (1024 * 1024) /* longest record a reader accepts */

struct journal {
  int fd;
  char *buf;
  size_t len;
  uint64_t bytes, records;
};

int journal_open(const char *run_dir, journal **out) {
  *out = NULL;
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/journal.jsonl", run_dir) >= (int)sizeof path)
    return PM_EINVAL;
  journal *j = calloc(1, sizeof *j);
  if (!j) return PM_ENOMEM;
  j->buf = malloc(JOURNAL_BUF_CAP);
  if (!j->buf) goto fail_j;
  j->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (j->fd < 0) goto fail_buf;
  *out = j;
  return 0;
fail_buf:
  free(j->buf);
fail_j:
  free(j);
  return PM_ESYS;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return PM_EIO;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int journal_flush(journal *j) {
  if (!j || j->len == 0) return 0;
  int rc = write_all(j->fd, j->buf, j->len);
  j->len = 0;
  return rc;
}

int journal_sync(journal *j) {
  int rc = journal_flush(j);
  if (rc) return rc;
  return fsync(j->fd) == 0 ? 0 : PM_EIO;
}

int journal_append(journal *j, struct json_object *rec) {
  if (!j || !rec) return PM_EINVAL;
  struct json_object *ev;
  if (!json_object_object_get_ex(rec, "ev", &ev) ||
      !json_object_is_type(ev, json_type_string))
    return PM_EINVAL;
  if (!json_object_object_get_ex(rec, "t", NULL))
    json_object_object_add(rec, "t", json_object_new_double(clock_real_s()));
  size_t n = 0;
  const char *s = json_object_to_json_string_length(
      rec, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
  if (!s) return PM_ENOMEM;
  return journal_append_line(j, s, n);
}

int journal_append_line(journal *j, const char *s, size_t n) {
  if (!j || !s) return PM_EINVAL;
  if (n + 1 > JOURNAL_LINE_MAX) return PM_ETOOBIG;
  if (j->len + n + 1 > JOURNAL_BUF_CAP) {
    int rc = journal_flush(j);
    if (rc) return rc;
  }
  if (n + 1 > JOURNAL_BUF_CAP) { /* a record bigger than the buffer */
    int rc = write_all(j->fd, s, n);
    if (!rc) rc = write_all(j->fd, "\n", 1);
    if (rc) return rc;
  } else {
    memcpy(j->buf + j->len, s, n);
    j->buf[j->len + n] = '\n';
    j->len += n + 1;
  }
  j->bytes += n + 1;
  j->records++;
  return 0;
}

uint64_t journal_bytes(const journal *j) { return j ? j->bytes : 0; }
uint64_t journal_records(const journal *j) { return j ? j->records : 0; }

void journal_close(journal *j) {
  if (!j) return;
  journal_flush(j);
  close(j->fd);
  free(j->buf);
  free(j);
}

int journal_read(const char *run_dir, journal_cb cb, void *ud,
                 long *bad_line, const char **warn) {
  if (bad_line) *bad_line = 0;
  if (warn) *warn = NULL;
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/journal.jsonl", run_dir) >= (int)sizeof path)
    return PM_EINVAL;
  FILE *f = fopen(path, "r");
  if (!f) return errno == ENOENT ? PM_ENOENT : PM_EIO;
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  long lineno = 0;
  int rc = 0;
  struct json_tokener *tok = json_tokener_new();
  if (!tok) {
    fclose(f);
    return PM_ENOMEM;
  }
  while ((n = getline(&line, &cap, f)) > 0) {
    lineno++;
    if (line[n - 1] != '\n') {
      if (warn) *warn = "the journal's last record is incomplete (a crash mid-write?); it was ignored";
      break;
    }
    if (n > JOURNAL_LINE_MAX) {
      rc = PM_ETOOBIG;
      break;
    }
    json_tokener_reset(tok);
    struct json_object *rec = json_tokener_parse_ex(tok, line, (int)n - 1);
    struct json_object *ev;
    /* The object must be the whole line: "{...}{...}" or "{...} junk" is
     * a broken writer, not a record to half-trust. */
    if (!rec || json_tokener_get_error(tok) != json_tokener_success ||
        json_tokener_get_parse_end(tok) != (size_t)n - 1 ||
        !json_object_is_type(rec, json_type_object) ||
        !json_object_object_get_ex(rec, "ev", &ev) ||
        !json_object_is_type(ev, json_type_string)) {
      json_object_put(rec);
      rc = PM_EPARSE;
      break;
    }
    rc = cb ? cb(rec, ud) : 0;
    json_object_put(rec);
    if (rc) break;
  }
  if (rc == PM_EPARSE || rc == PM_ETOOBIG) {
    if (bad_line) *bad_line = lineno;
  }
  json_tokener_free(tok);
  free(line);
  fclose(f);
  return rc;
}
