/* lib.h - internals of libparamount shared by its few source files.
 *
 * The whole library state lives in one static struct (lib_g): the calling
 * thread only stamps times and pushes fixed-size events into a bounded
 * ring; client.c's background thread drains the ring onto the socket.
 * Nothing here is exported (paramount.map hides all but the public API).
 */
#ifndef PM_LIB_H
#define PM_LIB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "common/wire.h"

/* One queued event, 64 bytes.  v[] follows the wire fields of its type:
 *   INIT_BEGIN, INIT_END   v0 t_ns
 *   ITER                   v0 iter, v1 t_begin_ns, v2 wall_ns,
 *                          v3 compute_ns, v4 comm_ns, v5 samples
 *   EPOCH                  v0 t_ns, v1 epoch, v2 last_iter
 *   PHASE                  v0 t_ns, v1 first_iter, v2 planned_iters
 *   CHECKPOINT             v0 t_ns, v1 iter
 * str (PHASE name, CHECKPOINT path) is malloc'd and owned by the event:
 * whoever drops or sends the event frees it. */
typedef struct {
  uint8_t type; /* wire_type */
  uint64_t v[6];
  char *str;
} lib_event;

#define LIB_QUEUE_DEFAULT 65536u
#define LIB_QUEUE_MAX (1u << 24)
#define LIB_FLUSH_DEFAULT_MS 2000u
#define LIB_HOST_MAX 255

typedef struct {
  atomic_int live; /* 1 between pm_init and pm_finalize */

  /* Configuration, fixed by pm_init. */
  int has_endpoint;
  char host[LIB_HOST_MAX + 1];
  char port[8];
  char token[WIRE_TOKEN_MAX + 1];
  char node[WIRE_NAME_MAX + 1];
  char app[WIRE_NAME_MAX + 1];
  uint32_t rank;
  int mo833;
  uint32_t flush_ms;

  /* The bounded ring; mu guards ring/head/len/wake_sent.  ring is NULL
   * when there is no endpoint: events then go nowhere and are not
   * counted as dropped. */
  pthread_mutex_t mu;
  lib_event *ring;
  uint32_t cap, head, len;
  int wake_sent;
  atomic_uint_fast64_t dropped;
  atomic_uint_fast64_t sent;

  /* Timing state of the calling (application) thread. */
  uint64_t init_begin_mono_ns, init_begin_real_ns, init_end_mono_ns;
  int init_ended;
  int in_iter;
  uint64_t iter, next_iter, iter_begin_real_ns, iter_begin_mono_ns;
  uint64_t loop_ns, n_iters;

  /* Background client. */
  pthread_t thread;
  int has_thread;
  int wake_fd[2];       /* pipe: app -> client thread nudges */
  atomic_int sock_fd;   /* so a fork child can close its copy */
  atomic_int finalizing;
  uint64_t deadline_mono_ns;
  atomic_int connected;
  atomic_int stop_flag;
  atomic_uint_fast64_t stop_iter;
} lib_state;

extern lib_state lib_g;

uint64_t lib_mono_ns(void);
uint64_t lib_real_ns(void);

/* Takes up to max events off the ring into out[]; returns how many. */
uint32_t lib_queue_pop(lib_event *out, uint32_t max);

/* One "libparamount: ..." line on stderr. */
void lib_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The background thread's body (client.c). */
void *client_main(void *arg);

#endif
