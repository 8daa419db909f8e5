/* fuzz.h - what every libFuzzer target under fuzz/ shares with the corpus
 * replay (replay_main.c): the entry point, and whether the last input was
 * accepted, so the replay can hold seeds named ok_* to "must load" and
 * bad_* to "must be refused" in the normal build, not only "must not crash".
 */
#ifndef PM_FUZZ_H
#define PM_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Set by LLVMFuzzerTestOneInput: 1 when the loader accepted the input. */
extern int fuzz_accepted;

/* Aborts with `what` on stderr: a broken guarantee, which libFuzzer
 * reports as a crash with the input that caused it. */
_Noreturn void fuzz_fail(const char *what);

/* Checks an error message a loader returned: non-empty, one line, and
 * starting with `prefix` (the file name it was given) when not NULL. */
void fuzz_check_message(const char *err, const char *prefix);

#endif
