/* test_wire.c - round trips and refusals of the frame codec (wire.c). */
#include "common/wire.h"
#include "paramount.h"
#include "test.h"

static size_t enc(const wire_msg *m, uint8_t *buf) {
  size_t len = 0;
  ASSERT_EQ_INT(wire_encode(m, buf, WIRE_MAX_FRAME, &len), 0);
  return len;
}

TEST(roundtrip_every_type) {
  for (int t = 1; t <= WIRE_TYPE_MAX_; t++) {
    wire_msg m, d;
    memset(&m, 0, sizeof m);
    m.type = (uint8_t)t;
    m.u.iter.iter = 42; /* the first field of most bodies */
    if (t == WIRE_HELLO) {
      strcpy(m.u.hello.token, "tok");
      strcpy(m.u.hello.node, "n1");
      strcpy(m.u.hello.app, "burn");
      m.u.hello.rank = 7;
    } else if (t == WIRE_PHASE) {
      strcpy(m.u.phase.name, "gan");
      m.u.phase.planned_iters = 99;
    } else if (t == WIRE_CHECKPOINT) {
      strcpy(m.u.checkpoint.path, "/tmp/ck");
    }
    uint8_t buf[WIRE_MAX_FRAME];
    size_t len = enc(&m, buf), used = 0;
    ASSERT_EQ_INT(wire_decode(buf, len, &d, &used, NULL), 0);
    ASSERT_EQ_INT(used, len);
    ASSERT_EQ_INT(d.type, t);
    if (t == WIRE_HELLO) {
      ASSERT_STREQ(d.u.hello.token, "tok");
      ASSERT_STREQ(d.u.hello.node, "n1");
      ASSERT_EQ_INT(d.u.hello.rank, 7);
    } else if (t == WIRE_PHASE) {
      ASSERT_STREQ(d.u.phase.name, "gan");
      ASSERT_EQ_U64(d.u.phase.planned_iters, 99);
    } else if (t == WIRE_CHECKPOINT) {
      ASSERT_STREQ(d.u.checkpoint.path, "/tmp/ck");
    } else if (t == WIRE_ITER) {
      ASSERT_EQ_U64(d.u.iter.iter, 42);
    }
  }
}

TEST(partial_frames_ask_for_more) {
  wire_msg m = {.type = WIRE_ITER};
  m.u.iter.compute_ns = 123;
  uint8_t buf[WIRE_MAX_FRAME];
  size_t len = enc(&m, buf), used = 0;
  wire_msg d;
  for (size_t cut = 0; cut < len; cut++)
    ASSERT_EQ_INT(wire_decode(buf, cut, &d, &used, NULL), PM_EAGAIN);
  ASSERT_EQ_INT(wire_decode(buf, len, &d, &used, NULL), 0);
  ASSERT_EQ_U64(d.u.iter.compute_ns, 123);
}

TEST(refuses_garbage_early) {
  const uint8_t http[] = "GET / HTTP/1.1\r\n";
  wire_msg d;
  size_t used;
  const char *why = NULL;
  ASSERT_EQ_INT(wire_decode(http, 1, &d, &used, &why), PM_EPROTO);
  ASSERT_STREQ(why, "bad magic");
  uint8_t badver[] = {'P', 'M', 9, WIRE_ITER};
  ASSERT_EQ_INT(wire_decode(badver, 4, &d, &used, &why), PM_EPROTO);
  ASSERT_CONTAINS(why, "version");
  uint8_t badtype[] = {'P', 'M', WIRE_VERSION, 200};
  ASSERT_EQ_INT(wire_decode(badtype, 4, &d, &used, &why), PM_EPROTO);
  ASSERT_CONTAINS(why, "type");
}

TEST(refuses_oversized_payload_from_header) {
  uint8_t hdr[8] = {'P', 'M', WIRE_VERSION, WIRE_ITER, 0, 0, 0x10, 0};
  wire_msg d;
  size_t used;
  const char *why = NULL;
  ASSERT_EQ_INT(wire_decode(hdr, sizeof hdr, &d, &used, &why), PM_ETOOBIG);
  ASSERT_CONTAINS(why, "cap");
}

TEST(refuses_length_mismatch_and_long_strings) {
  wire_msg m = {.type = WIRE_INIT_END};
  uint8_t buf[WIRE_MAX_FRAME];
  size_t len = enc(&m, buf), used;
  wire_msg d;
  const char *why;
  buf[4] = 9; /* payload claims one extra byte */
  buf[len] = 0;
  ASSERT_EQ_INT(wire_decode(buf, len + 1, &d, &used, &why), PM_EPROTO);
  ASSERT_CONTAINS(why, "longer");
  buf[4] = 7; /* and one byte short */
  ASSERT_EQ_INT(wire_decode(buf, len, &d, &used, &why), PM_EPROTO);
  ASSERT_CONTAINS(why, "short");

  /* a phase name whose length prefix exceeds its cap */
  wire_msg p = {.type = WIRE_PHASE};
  strcpy(p.u.phase.name, "x");
  len = enc(&p, buf);
  buf[WIRE_HEADER_SIZE + 24] = WIRE_NAME_MAX + 1;
  ASSERT_EQ_INT(wire_decode(buf, len, &d, &used, &why), PM_EPROTO);
  ASSERT_CONTAINS(why, "cap");
}

TEST(encoder_refuses_overlong_strings) {
  wire_msg m = {.type = WIRE_HELLO};
  memset(m.u.hello.token, 'a', WIRE_TOKEN_MAX);
  m.u.hello.token[WIRE_TOKEN_MAX] = 'b'; /* no NUL inside the cap */
  uint8_t buf[WIRE_MAX_FRAME];
  size_t len;
  ASSERT_EQ_INT(wire_encode(&m, buf, sizeof buf, &len), PM_ETOOBIG);
  m.type = 77;
  ASSERT_EQ_INT(wire_encode(&m, buf, sizeof buf, &len), PM_EINVAL);
}

TEST(error_table_names_every_code) {
  ASSERT_STREQ(pm_errname(PM_EPROTO), "PM_EPROTO");
  ASSERT_STREQ(pm_strerror(PM_EAUTH), "authentication refused");
  ASSERT_STREQ(pm_strerror(-9999), "unknown error");
  ASSERT_STREQ(pm_strerror(0), "success");
}

TEST_MAIN()
