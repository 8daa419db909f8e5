/* fuzz_wire.c - libFuzzer target for the frame decoder (src/common/wire.c).
 *
 * The decoder is the only code that reads bytes from the network before
 * authentication.  Feeds the input as a stream of frames, as the intake
 * does, and checks what a decoder must guarantee: no read outside the
 * input (ASan), a reason for every refusal, a consumed length within
 * bounds, and that re-encoding a decoded frame gives back its exact bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/wire.h"
#include "paramount.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t off = 0;
  while (off < size) {
    wire_msg m;
    size_t used = 0;
    const char *why = NULL;
    int rc = wire_decode(data + off, size - off, &m, &used, &why);
    if (rc == PM_EAGAIN) break;
    if (rc != 0) {
      if (!why || (rc != PM_EPROTO && rc != PM_ETOOBIG)) abort();
      break;
    }
    if (used < WIRE_HEADER_SIZE || used > size - off || used > WIRE_MAX_FRAME) abort();
    uint8_t buf[WIRE_MAX_FRAME];
    size_t len = 0;
    if (wire_encode(&m, buf, sizeof buf, &len) != 0) abort();
    if (len != used || memcmp(buf, data + off, len) != 0) abort();
    off += used;
  }
  return 0;
}
