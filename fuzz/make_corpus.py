#!/usr/bin/python3
"""make_corpus.py - writes fuzz/corpus/wire: the seed corpus of fuzz_wire.

One valid frame of every type, a typical rank's stream of frames, and the
malformed inputs the intake must refuse (kept as regressions: the corpus
runner test feeds every file to the decoder in the normal build).
Frame layout: docs/protocol.md.  Run from anywhere; rewrites the folder.
"""
import os
import struct

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "wire")
T = dict(HELLO=1, WELCOME=2, INIT_BEGIN=3, INIT_END=4, ITER=5, EPOCH=6,
         PHASE=7, CHECKPOINT=8, FINALIZE=9, STOP=10, HEARTBEAT=11)


def s(text):
    b = text.encode()
    return struct.pack("<H", len(b)) + b


def frame(kind, payload, version=1):
    return b"PM" + bytes([version, T[kind]]) + struct.pack("<I", len(payload)) + payload


def u64(*v):
    return struct.pack("<%dQ" % len(v), *v)


NOW = 1700000000 * 10**9
valid = {
    "hello": frame("HELLO", s("0123456789abcdef0123456789abcdef") + s("node-a") + s("burn")
                   + struct.pack("<II", 2, 4242)),
    "welcome": frame("WELCOME", struct.pack("<I", 7)),
    "init_begin": frame("INIT_BEGIN", u64(NOW)),
    "init_end": frame("INIT_END", u64(NOW + 10**9)),
    "iter": frame("ITER", u64(5, NOW, 10**7, 9 * 10**6, 10**6, 64)),
    "epoch": frame("EPOCH", u64(NOW, 1, 99)),
    "phase": frame("PHASE", u64(NOW, 20, 100) + s("gan")),
    "checkpoint": frame("CHECKPOINT", u64(NOW, 99) + s("/tmp/run/burn.ckpt")),
    "finalize": frame("FINALIZE", u64(NOW, 0, 104)),
    "stop": frame("STOP", u64(150)),
    "heartbeat": frame("HEARTBEAT", u64(NOW, 0, 50)),
}
valid["stream"] = (valid["hello"] + valid["init_begin"] + valid["init_end"]
                   + valid["phase"] + b"".join(
                       frame("ITER", u64(i, NOW + i * 10**7, 10**7, 9 * 10**6, 10**6, 64))
                       for i in range(8)) + valid["epoch"] + valid["heartbeat"]
                   + valid["finalize"])
bad = {
    "bad_garbage": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad_oversized_length": b"PM\x01\x05" + struct.pack("<I", 0x7FFFFFFF),
    "bad_version": frame("ITER", u64(0, 0, 0, 0, 0, 0), version=2),
    "bad_truncated": valid["iter"][:30],
    "bad_short_payload": frame("INIT_END", b"\x01\x02"),
    "bad_long_payload": frame("STOP", u64(1, 2)),
    "bad_string_nul": frame("PHASE", u64(0, 0, 0) + struct.pack("<H", 3) + b"a\x00b"),
    "bad_string_cap": frame("PHASE", u64(0, 0, 0) + s("x" * 64)),
    "bad_string_past_end": frame("PHASE", u64(0, 0, 0) + struct.pack("<H", 40) + b"abc"),
    "bad_type": b"PM\x01\x63" + struct.pack("<I", 0),
}

os.makedirs(HERE, exist_ok=True)
for name in os.listdir(HERE):
    os.unlink(os.path.join(HERE, name))
# ok_* must decode completely, bad_* must be refused (fuzz/corpus_main.c);
# files the fuzzer adds later carry hashes and are checked for crashes only.
for name, data in {**{"ok_" + k: v for k, v in valid.items()}, **bad}.items():
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)
print("wrote %d files to %s" % (len(valid) + len(bad), HERE))
