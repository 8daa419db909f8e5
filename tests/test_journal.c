/* test_journal.c - the run journal (src/common/journal.c) on real files:
 * buffered appends become visible on flush, records read back in order,
 * a record torn by a crash mid-write is skipped with a warning, and any
 * other malformed line is an error that names its line number.
 * Reports and `paramount down` trust the journal alone, so these are the
 * guarantees they stand on.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <json-c/json.h>
#include <sys/stat.h>

#include "common/journal.h"
#include "paramount.h"
#include "test.h"

static char top[64]; /* made before the cases fork, removed after them */
static char dir[128];

__attribute__((constructor)) static void top_make(void) {
  snprintf(top, sizeof top, "/tmp/pm-test-journal-XXXXXX");
  if (!mkdtemp(top)) top[0] = '\0';
}

static int top_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

/* Runs in the parent only: the cases leave with _exit. */
__attribute__((destructor)) static void top_remove(void) {
  if (top[0]) nftw(top, top_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void make_dir(void) {
  ASSERT(top[0] != '\0');
  snprintf(dir, sizeof dir, "%s/XXXXXX", top);
  ASSERT(mkdtemp(dir) != NULL);
}

static void journal_path(char *path, size_t cap) {
  snprintf(path, cap, "%s/journal.jsonl", dir);
}

static long file_size(void) {
  char path[256];
  journal_path(path, sizeof path);
  struct stat st;
  if (stat(path, &st) != 0) return -1;
  return (long)st.st_size;
}

/* Writes text as the whole journal, as a crashed or foreign writer may. */
static void write_journal(const char *text) {
  char path[256];
  journal_path(path, sizeof path);
  FILE *f = fopen(path, "w");
  ASSERT(f != NULL);
  ASSERT_EQ_INT(fwrite(text, 1, strlen(text), f), strlen(text));
  ASSERT_EQ_INT(fclose(f), 0);
}

static struct json_object *rec_new(const char *ev, int n) {
  struct json_object *o = json_object_new_object();
  json_object_object_add(o, "ev", json_object_new_string(ev));
  json_object_object_add(o, "n", json_object_new_int(n));
  return o;
}

/* Collects what journal_read delivers: "ev:n" per record. */
typedef struct {
  int count;
  char seen[64][32];
  int stop_after; /* 0: never */
} reader;

static int collect(struct json_object *rec, void *ud) {
  reader *r = ud;
  struct json_object *ev, *n;
  json_object_object_get_ex(rec, "ev", &ev);
  int num = json_object_object_get_ex(rec, "n", &n) ? json_object_get_int(n) : -1;
  if (r->count < 64)
    snprintf(r->seen[r->count], sizeof r->seen[0], "%s:%d", json_object_get_string(ev), num);
  r->count++;
  return r->stop_after && r->count == r->stop_after ? 42 : 0;
}

TEST(appends_are_buffered_until_flush_then_read_back_in_order) {
  make_dir();
  journal *j;
  ASSERT_EQ_INT(journal_open(dir, &j), 0);
  for (int i = 0; i < 3; i++) {
    struct json_object *o = rec_new("node_request", i);
    ASSERT_EQ_INT(journal_append(j, o), 0);
    json_object_put(o);
  }
  ASSERT_EQ_INT(file_size(), 0); /* buffered: nothing written yet */
  ASSERT_EQ_INT(journal_records(j), 3);
  ASSERT_EQ_INT(journal_flush(j), 0);
  ASSERT_EQ_INT(file_size(), (long)journal_bytes(j));
  reader r = {0};
  long bad = -1;
  const char *warn = "x";
  ASSERT_EQ_INT(journal_read(dir, collect, &r, &bad, &warn), 0);
  ASSERT_EQ_INT(r.count, 3);
  ASSERT_STREQ(r.seen[0], "node_request:0");
  ASSERT_STREQ(r.seen[2], "node_request:2");
  ASSERT_EQ_INT(bad, 0);
  ASSERT(warn == NULL);
  journal_close(j);
}

TEST(append_sets_t_when_missing_and_keeps_a_given_one) {
  make_dir();
  journal *j;
  ASSERT_EQ_INT(journal_open(dir, &j), 0);
  struct json_object *a = rec_new("a", 1), *b = rec_new("b", 2);
  json_object_object_add(b, "t", json_object_new_double(12.5));
  ASSERT_EQ_INT(journal_append(j, a), 0);
  ASSERT_EQ_INT(journal_append(j, b), 0);
  /* rec is borrowed: the caller still owns it, now with "t" */
  struct json_object *t;
  ASSERT(json_object_object_get_ex(a, "t", &t));
  ASSERT_OP_DBL(json_object_get_double(t), >, 1.6e9);
  json_object_put(a);
  json_object_put(b);
  journal_close(j); /* close flushes */
  char path[256], line[256];
  journal_path(path, sizeof path);
  FILE *f = fopen(path, "r");
  ASSERT(f != NULL);
  ASSERT(fgets(line, sizeof line, f));
  ASSERT_CONTAINS(line, "\"t\":");
  ASSERT(fgets(line, sizeof line, f));
  ASSERT_CONTAINS(line, "\"t\":12.5");
  fclose(f);
}

TEST(sync_writes_through_and_reopen_appends) {
  make_dir();
  journal *j;
  ASSERT_EQ_INT(journal_open(dir, &j), 0);
  struct json_object *o = rec_new("run_start", 0);
  ASSERT_EQ_INT(journal_append(j, o), 0);
  ASSERT_EQ_INT(journal_sync(j), 0);
  long after_sync = file_size();
  ASSERT_OP_DBL(after_sync, >, 0);
  journal_close(j);
  ASSERT_EQ_INT(journal_open(dir, &j), 0); /* a second controller, or down */
  ASSERT_EQ_INT(journal_append(j, o), 0);
  journal_close(j);
  json_object_put(o);
  ASSERT_EQ_INT(file_size(), 2 * after_sync);
  reader r = {0};
  ASSERT_EQ_INT(journal_read(dir, collect, &r, NULL, NULL), 0);
  ASSERT_EQ_INT(r.count, 2);
}

TEST(append_refuses_a_record_without_a_string_ev) {
  make_dir();
  journal *j;
  ASSERT_EQ_INT(journal_open(dir, &j), 0);
  struct json_object *o = json_object_new_object();
  ASSERT_EQ_INT(journal_append(j, o), PM_EINVAL);
  json_object_object_add(o, "ev", json_object_new_int(3));
  ASSERT_EQ_INT(journal_append(j, o), PM_EINVAL);
  ASSERT_EQ_INT(journal_append(j, NULL), PM_EINVAL);
  json_object_put(o);
  ASSERT_EQ_INT(journal_records(j), 0);
  journal_close(j);
  ASSERT_EQ_INT(file_size(), 0);
  journal_close(NULL); /* no-op */
}

TEST(a_record_bigger_than_the_buffer_is_written_whole) {
  make_dir();
  journal *j;
  ASSERT_EQ_INT(journal_open(dir, &j), 0);
  size_t n = 300 * 1024;
  char *big = malloc(n + 64);
  ASSERT(big != NULL);
  int len = snprintf(big, 64, "{\"ev\":\"big\",\"t\":1,\"pad\":\"");
  memset(big + len, 'x', n);
  memcpy(big + len + n, "\"}", 3);
  ASSERT_EQ_INT(journal_append_line(j, "{\"ev\":\"small\",\"t\":1}", 20), 0);
  ASSERT_EQ_INT(journal_append_line(j, big, strlen(big)), 0);
  journal_close(j);
  free(big);
  reader r = {0};
  ASSERT_EQ_INT(journal_read(dir, collect, &r, NULL, NULL), 0);
  ASSERT_EQ_INT(r.count, 2);
  ASSERT_STREQ(r.seen[0], "small:-1"); /* order kept across the direct write */
  ASSERT_STREQ(r.seen[1], "big:-1");
}

TEST(a_line_over_the_reader_cap_is_refused_on_both_sides) {
  make_dir();
  journal *j;
  ASSERT_EQ_INT(journal_open(dir, &j), 0);
  size_t n = 1024 * 1024 + 1;
  char *huge = malloc(n);
  ASSERT(huge != NULL);
  memset(huge, 'x', n);
  ASSERT_EQ_INT(journal_append_line(j, huge, n), PM_ETOOBIG);
  journal_close(j);
  ASSERT_EQ_INT(file_size(), 0);
  /* A foreign writer's line that long: an error at its line number. */
  char path[256];
  journal_path(path, sizeof path);
  FILE *f = fopen(path, "w");
  ASSERT(f != NULL);
  fputs("{\"ev\":\"a\",\"t\":1}\n", f);
  fwrite(huge, 1, n, f);
  fputs("\n", f);
  fclose(f);
  free(huge);
  long bad = 0;
  ASSERT_EQ_INT(journal_read(dir, NULL, NULL, &bad, NULL), PM_ETOOBIG);
  ASSERT_EQ_INT(bad, 2);
}

TEST(a_torn_last_record_is_skipped_with_a_warning) {
  make_dir();
  write_journal("{\"ev\":\"a\",\"n\":1,\"t\":1}\n"
                "{\"ev\":\"b\",\"n\":2,\"t\":2}\n"
                "{\"ev\":\"c\",\"n\":3,\"t\""); /* crash mid-write */
  reader r = {0};
  long bad = -1;
  const char *warn = NULL;
  ASSERT_EQ_INT(journal_read(dir, collect, &r, &bad, &warn), 0);
  ASSERT_EQ_INT(r.count, 2);
  ASSERT_STREQ(r.seen[1], "b:2");
  ASSERT_EQ_INT(bad, 0);
  ASSERT(warn != NULL);
  ASSERT_CONTAINS(warn, "incomplete");
}

TEST(a_torn_record_that_happens_to_be_valid_json_is_still_skipped) {
  /* Without its newline a record may be cut right after a complete value
   * ("{...}" of a nested object); only the newline says it is whole. */
  make_dir();
  write_journal("{\"ev\":\"a\",\"t\":1}\n{\"ev\":\"b\",\"t\":2}");
  reader r = {0};
  const char *warn = NULL;
  ASSERT_EQ_INT(journal_read(dir, collect, &r, NULL, &warn), 0);
  ASSERT_EQ_INT(r.count, 1);
  ASSERT(warn != NULL);
}

/* Table: a journal with one bad line -> the line number reported. */
static const struct {
  const char *name, *text;
  long line;
} malformed[] = {
    {"not json", "{\"ev\":\"a\",\"t\":1}\nnot json\n{\"ev\":\"c\",\"t\":3}\n", 2},
    {"no ev", "{\"ev\":\"a\",\"t\":1}\n{\"ev\":\"b\",\"t\":2}\n{\"t\":3}\n", 3},
    {"ev not a string", "{\"ev\":7,\"t\":1}\n", 1},
    {"not an object", "{\"ev\":\"a\",\"t\":1}\n[\"ev\",\"b\"]\n", 2},
    {"blank line", "{\"ev\":\"a\",\"t\":1}\n\n{\"ev\":\"c\",\"t\":3}\n", 2},
    {"unterminated object", "{\"ev\":\"a\",\"t\":1\n{\"ev\":\"b\",\"t\":2}\n", 1},
    {"two records on a line", "{\"ev\":\"a\",\"t\":1}{\"ev\":\"b\",\"t\":2}\n", 1},
    {"trailing garbage", "{\"ev\":\"a\",\"t\":1}\n{\"ev\":\"b\",\"t\":2} junk\n", 2},
};

TEST(a_malformed_line_is_an_error_with_its_line_number) {
  for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
    make_dir();
    write_journal(malformed[i].text);
    reader r = {0};
    long bad = 0;
    int rc = journal_read(dir, collect, &r, &bad, NULL);
    if (rc != PM_EPARSE || bad != malformed[i].line)
      TEST_FAIL_("case '%s': rc %d line %ld, want %d line %ld", malformed[i].name, rc, bad,
                 PM_EPARSE, malformed[i].line);
    /* records before the bad line were delivered, none after it */
    if (r.count != malformed[i].line - 1)
      TEST_FAIL_("case '%s': %d records delivered before line %ld", malformed[i].name,
                 r.count, malformed[i].line);
  }
}

TEST(a_callback_stops_the_walk_with_its_code) {
  make_dir();
  write_journal("{\"ev\":\"a\",\"t\":1}\n{\"ev\":\"b\",\"t\":2}\n{\"ev\":\"c\",\"t\":3}\n");
  reader r = {.stop_after = 2};
  ASSERT_EQ_INT(journal_read(dir, collect, &r, NULL, NULL), 42);
  ASSERT_EQ_INT(r.count, 2);
}

TEST(a_missing_journal_is_enoent) {
  make_dir();
  long bad = -1;
  ASSERT_EQ_INT(journal_read(dir, collect, NULL, &bad, NULL), PM_ENOENT);
  ASSERT_EQ_INT(journal_read("/nonexistent/pm-run", collect, NULL, NULL, NULL), PM_ENOENT);
  journal *j = (journal *)1;
  ASSERT(journal_open("/nonexistent/pm-run", &j) != 0);
  ASSERT(j == NULL);
}

TEST(two_processes_appending_never_interleave_inside_a_line) {
  /* The controller and `paramount down` may append at the same time. */
  make_dir();
  enum { PER_PROC = 3000 };
  pid_t pid = fork();
  ASSERT(pid >= 0);
  journal *j;
  ASSERT_EQ_INT(journal_open(dir, &j), 0);
  const char *who = pid == 0 ? "child" : "parent";
  for (int i = 0; i < PER_PROC; i++) {
    char line[160];
    int n = snprintf(line, sizeof line,
                     "{\"ev\":\"%s\",\"n\":%d,\"t\":1,\"pad\":\"%040d\"}", who, i, i);
    if (journal_append_line(j, line, (size_t)n) != 0) _exit(3);
    if (i % 7 == 0 && journal_flush(j) != 0) _exit(4);
  }
  journal_close(j);
  if (pid == 0) _exit(0);
  int st = 0;
  ASSERT_EQ_INT(waitpid(pid, &st, 0), pid);
  ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  reader r = {0};
  long bad = 0;
  ASSERT_EQ_INT(journal_read(dir, collect, &r, &bad, NULL), 0);
  ASSERT_EQ_INT(r.count, 2 * PER_PROC);
}

TEST_MAIN()
