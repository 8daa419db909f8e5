"""test_python_binding.py - the ctypes binding against a real socket.

A controller stand-in listens on 127.0.0.1, decodes frames (the layout of
src/common/wire.h, re-implemented here so the test does not trust the code
it checks), answers HELLO with WELCOME and, once iteration 2 arrives, sends
STOP.  The training loop uses bindings/python/paramount.py in this very
process.  Run by ctest with PARAMOUNT_LIB pointing at the built library.
"""
import os
import socket
import struct
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bindings", "python"))
import paramount as pm  # noqa: E402

HELLO, WELCOME, INIT_BEGIN, INIT_END, ITER, EPOCH, PHASE, CHECKPOINT, \
    FINALIZE, STOP, HEARTBEAT = range(1, 12)


def frame(ftype, payload):
    return b"PM" + bytes([1, ftype]) + struct.pack("<I", len(payload)) + payload


def take_str(p, off):
    (n,) = struct.unpack_from("<H", p, off)
    return p[off + 2:off + 2 + n].decode(), off + 2 + n


def decode(ftype, p):
    if ftype == HELLO:
        tok, o = take_str(p, 0)
        node, o = take_str(p, o)
        app, o = take_str(p, o)
        rank, pid = struct.unpack_from("<II", p, o)
        assert o + 8 == len(p), "HELLO has trailing bytes"
        return dict(token=tok, node=node, app=app, rank=rank, pid=pid)
    if ftype in (INIT_BEGIN, INIT_END):
        return dict(t=struct.unpack("<Q", p)[0])
    if ftype == ITER:
        k = ("iter", "t_begin", "wall", "compute", "comm", "samples")
        return dict(zip(k, struct.unpack("<6Q", p)))
    if ftype == EPOCH:
        return dict(zip(("t", "epoch", "last_iter"), struct.unpack("<3Q", p)))
    if ftype == PHASE:
        d = dict(zip(("t", "first", "planned"), struct.unpack_from("<3Q", p)))
        d["name"], _ = take_str(p, 24)
        return d
    if ftype == CHECKPOINT:
        d = dict(zip(("t", "iter"), struct.unpack_from("<2Q", p)))
        d["path"], _ = take_str(p, 16)
        return d
    if ftype in (FINALIZE, HEARTBEAT):
        return dict(zip(("t", "dropped", "sent"), struct.unpack("<3Q", p)))
    raise AssertionError("unexpected frame type %d" % ftype)


class Controller(threading.Thread):
    def __init__(self, stop_at_iter=2, stop_iter=7):
        super().__init__(daemon=True)
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(1)
        self.port = self.ls.getsockname()[1]
        self.frames = []
        self.stop_at_iter, self.stop_iter = stop_at_iter, stop_iter
        self.done = threading.Event()

    def run(self):
        conn, _ = self.ls.accept()
        buf = b""
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                buf += data
                while len(buf) >= 8:
                    assert buf[:3] == b"PM\x01", "bad header %r" % buf[:8]
                    ftype = buf[3]
                    (plen,) = struct.unpack_from("<I", buf, 4)
                    if len(buf) < 8 + plen:
                        break
                    msg = decode(ftype, buf[8:8 + plen])
                    buf = buf[8 + plen:]
                    self.frames.append((ftype, msg))
                    if ftype == HELLO:
                        conn.sendall(frame(WELCOME, struct.pack("<I", 1)))
                    if ftype == ITER and msg["iter"] == self.stop_at_iter:
                        conn.sendall(frame(STOP, struct.pack("<Q", self.stop_iter)))
                    if ftype == FINALIZE:
                        self.done.set()
        self.ls.close()

    def of(self, ftype):
        return [m for t, m in self.frames if t == ftype]


class BindingTest(unittest.TestCase):
    def test_a_calls_before_init_raise_estate(self):
        os.environ.pop("PARAMOUNT_ENDPOINT", None)
        with self.assertRaises(pm.ParamountError) as cm:
            pm.iter_begin(0)
        self.assertEqual(cm.exception.name, "PM_ESTATE")
        self.assertIn("pm_iter_begin", str(cm.exception))
        pm.finalize()  # a no-op, never an error

    def test_b_training_loop_reaches_the_controller(self):
        ctl = Controller()
        ctl.start()
        os.environ.update(PARAMOUNT_ENDPOINT="127.0.0.1:%d" % ctl.port,
                          PARAMOUNT_TOKEN="pytok", PARAMOUNT_NODE="py-node",
                          PARAMOUNT_APP="pytrain", PARAMOUNT_RANK="1")
        stop = None
        with pm.session():
            pm.init_end()
            pm.phase("train", 0, 6)
            for i in range(6):
                with pm.iteration(i, samples=16) as it:
                    time.sleep(0.004)
                    with it.communicating():
                        time.sleep(0.002)
                    it.comm(0.001)
                if i == 3:
                    pm.checkpoint("/tmp/ck-3", 3)
                # the STOP sent after iteration 2 arrives within a tick
                deadline = time.time() + 2
                while i >= 2 and stop is None and time.time() < deadline:
                    stop = pm.stop_requested()
                    time.sleep(0.005)
            pm.epoch_end(0, 5)
            self.assertTrue(pm.connected())
        self.assertTrue(ctl.done.wait(5), "no FINALIZE arrived")
        ctl.join(5)

        self.assertEqual(stop, 7)
        types = [t for t, _ in ctl.frames if t != HEARTBEAT]
        self.assertEqual(types, [HELLO, INIT_BEGIN, INIT_END, PHASE] + [ITER] * 4
                         + [CHECKPOINT] + [ITER] * 2 + [EPOCH, FINALIZE])
        hello = ctl.of(HELLO)[0]
        self.assertEqual((hello["token"], hello["node"], hello["app"], hello["rank"],
                          hello["pid"]), ("pytok", "py-node", "pytrain", 1, os.getpid()))
        self.assertEqual(ctl.of(PHASE)[0]["name"], "train")
        self.assertEqual(ctl.of(PHASE)[0]["planned"], 6)
        self.assertEqual(ctl.of(CHECKPOINT)[0]["path"], "/tmp/ck-3")
        iters = ctl.of(ITER)
        self.assertEqual([m["iter"] for m in iters], list(range(6)))
        for m in iters:
            self.assertEqual(m["samples"], 16)
            self.assertGreaterEqual(m["wall"], 6_000_000)  # slept 4 + 2 ms
            self.assertGreaterEqual(m["comm"], 3_000_000)  # measured 2 ms + 1 ms
            self.assertLess(m["comm"], m["wall"])
            self.assertEqual(m["compute"] + m["comm"], m["wall"])
        fin = ctl.of(FINALIZE)[0]
        self.assertEqual(fin["dropped"], 0)
        self.assertEqual(fin["sent"], 11)  # every event: 2 marks, phase, 6 iters, ck, epoch
        self.assertEqual(pm.dropped_events(), 0)

    def test_c_bad_arguments_raise(self):
        os.environ.pop("PARAMOUNT_ENDPOINT", None)
        with pm.session():
            with self.assertRaises(pm.ParamountError) as cm:
                pm.phase("x" * 64, 0)
            self.assertEqual(cm.exception.name, "PM_ETOOBIG")
            with self.assertRaises(ValueError):
                pm.iter_begin(-1)
            with self.assertRaises(pm.ParamountError) as cm:
                pm.init()
            self.assertEqual(cm.exception.code, -4)

    def test_d_explicit_wrong_library_path_is_named(self):
        with self.assertRaises(OSError) as cm:
            pm.load("/nonexistent/libparamount.so")
        self.assertIn("/nonexistent/libparamount.so", str(cm.exception))
        self.assertTrue(os.path.exists(pm.library_path()))


if __name__ == "__main__":
    unittest.main(verbosity=2)
