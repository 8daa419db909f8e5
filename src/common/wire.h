/* wire.h - Paramount's wire protocol: frame layout, encoder and decoder.
 *
 * Shared by libparamount (the sender) and the controller (the receiver).
 * docs/protocol.md is the prose version of this file; keep them in step.
 * Every frame is an 8-byte header and a payload of at most
 * WIRE_MAX_PAYLOAD bytes; every string field has its own cap.
 */
#ifndef PM_WIRE_H
#define PM_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define WIRE_MAGIC0 'P'
#define WIRE_MAGIC1 'M'
#define WIRE_VERSION 1
#define WIRE_HEADER_SIZE 8
#define WIRE_MAX_PAYLOAD 2048
#define WIRE_MAX_FRAME (WIRE_HEADER_SIZE + WIRE_MAX_PAYLOAD)

#define WIRE_TOKEN_MAX 128 /* bytes, excluding the terminating NUL */
#define WIRE_NAME_MAX 63   /* node id, app name, phase name */
#define WIRE_PATH_MAX 1023 /* checkpoint path */

typedef enum {
  WIRE_HELLO = 1,      /* client -> controller, first frame, once */
  WIRE_WELCOME = 2,    /* controller -> client, the token was accepted */
  WIRE_INIT_BEGIN = 3, /* client -> controller */
  WIRE_INIT_END = 4,
  WIRE_ITER = 5, /* one finished paramount iteration */
  WIRE_EPOCH = 6,
  WIRE_PHASE = 7,
  WIRE_CHECKPOINT = 8,
  WIRE_FINALIZE = 9,
  WIRE_STOP = 10,      /* controller -> client: stop at or after stop_iter */
  WIRE_HEARTBEAT = 11, /* client -> controller, about once a second */
  WIRE_TYPE_MAX_ = 11
} wire_type;

/* One decoded frame.  Strings are copied and NUL-terminated, so a message
 * owns no memory and outlives the buffer it was decoded from.  Times are
 * nanoseconds of CLOCK_REALTIME; durations are nanoseconds. */
typedef struct {
  uint8_t type; /* wire_type */
  union {
    struct {
      char token[WIRE_TOKEN_MAX + 1];
      char node[WIRE_NAME_MAX + 1];
      char app[WIRE_NAME_MAX + 1];
      uint32_t rank;
      uint32_t pid;
    } hello;
    struct {
      uint64_t t_ns;
    } mark; /* INIT_BEGIN, INIT_END */
    struct {
      uint64_t iter, t_begin_ns, wall_ns, compute_ns, comm_ns, samples;
    } iter;
    struct {
      uint64_t t_ns, epoch, last_iter;
    } epoch;
    struct {
      uint64_t t_ns, first_iter, planned_iters;
      char name[WIRE_NAME_MAX + 1];
    } phase;
    struct {
      uint64_t t_ns, iter;
      char path[WIRE_PATH_MAX + 1];
    } checkpoint;
    struct {
      uint64_t t_ns, dropped, sent;
    } fin; /* FINALIZE, HEARTBEAT */
    struct {
      uint64_t stop_iter;
    } stop;
    struct {
      uint32_t session;
    } welcome;
  } u;
} wire_msg;

/* Encodes m into buf (capacity cap).  On success stores the frame length
 * in *len and returns 0.  PM_ETOOBIG when a string exceeds its cap or the
 * frame exceeds cap; PM_EINVAL for an unknown type. */
int wire_encode(const wire_msg *m, uint8_t *buf, size_t cap, size_t *len);

/* Decodes one frame from the len bytes at buf.
 *   0          a frame was decoded into *out; *consumed is its length
 *   PM_EAGAIN  buf holds an incomplete (so far valid) frame: read more
 *   PM_EPROTO  bad magic, version, type or a payload that does not match
 *              its type; PM_ETOOBIG a payload length above the cap.
 * On error a static description is stored in *why (when why != NULL) and
 * *out is unspecified.  Never reads outside [buf, buf+len). */
int wire_decode(const uint8_t *buf, size_t len, wire_msg *out,
                size_t *consumed, const char **why);

/* Static name of a frame type, "UNKNOWN" for others. */
const char *wire_type_name(int type);

#endif
