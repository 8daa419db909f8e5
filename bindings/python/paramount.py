"""paramount.py - Python binding of libparamount (ctypes; no build, no pip).

A Python training loop reports its paramount iterations to a Paramount
controller through the same C library that C and Fortran programs link:

    import paramount as pm
    with pm.session():                      # pm_init ... pm_finalize
        pm.init_end()
        for i in range(n):
            with pm.iteration(i, samples=batch) as it:
                loss = step()
                with it.communicating():    # or it.comm(seconds)
                    allreduce()
            if pm.stop_requested() is not None: ...

The library is found, in order, at $PARAMOUNT_LIB, next to this file, in a
build directory of the source tree (../../build*/), in the lib directory
of an installation (share/paramount/python -> lib*/), then by the system
loader (ldconfig).  Calls raise ParamountError on misuse (negative PM_E*
codes); an absent or dying controller never raises, blocks or slows.
"""
import contextlib
import ctypes
import ctypes.util
import glob
import os
import time

__all__ = [
    "ParamountError", "load", "init", "init_end", "iter_begin", "iter_end",
    "epoch_end", "phase", "checkpoint", "finalize", "stop_requested",
    "dropped_events", "connected", "session", "iteration", "library_path",
]

_LIB = None
_LIB_PATH = None


class ParamountError(Exception):
    """A libparamount call returned a negative PM_E* code."""

    def __init__(self, func, code):
        lib = load()
        self.code = code
        self.name = lib.pm_errname(code).decode()
        msg = lib.pm_strerror(code).decode()
        super().__init__("%s: %s (%s, %d)" % (func, msg, self.name, code))


def _candidates():
    env = os.environ.get("PARAMOUNT_LIB")
    if env:
        # An explicit choice is the only choice: a wrong path must say so
        # rather than silently load some other copy.
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    names = ["libparamount.so", "libparamount.so.0"]
    found = [os.path.join(here, n) for n in names]
    root = os.path.dirname(os.path.dirname(here))
    for d in sorted(glob.glob(os.path.join(root, "build*"))):
        found += [os.path.join(d, n) for n in names]
    prefix = os.path.dirname(os.path.dirname(os.path.dirname(here)))
    for libdir in ("lib", "lib64", "lib/x86_64-linux-gnu", "lib/aarch64-linux-gnu"):
        found += [os.path.join(prefix, libdir, n) for n in names]
    sysname = ctypes.util.find_library("paramount")
    if sysname:
        found.append(sysname)
    return found


def _bind(lib):
    u64, i32, dbl, cstr = ctypes.c_uint64, ctypes.c_int, ctypes.c_double, ctypes.c_char_p
    sigs = {
        "pm_strerror": ([i32], cstr), "pm_errname": ([i32], cstr),
        "pm_init": ([], i32), "pm_init_end": ([], i32),
        "pm_iter_begin": ([u64], i32), "pm_iter_end": ([dbl, dbl, u64], i32),
        "pm_epoch_end": ([u64, u64], i32), "pm_phase": ([cstr, u64, u64], i32),
        "pm_checkpoint": ([cstr, u64], i32), "pm_finalize": ([], i32),
        "pm_stop_requested": ([ctypes.POINTER(u64)], i32),
        "pm_dropped_events": ([], u64), "pm_connected": ([], i32),
    }
    for name, (args, res) in sigs.items():
        f = getattr(lib, name)
        f.argtypes, f.restype = args, res


def load(path=None):
    """Loads libparamount (once) and returns the ctypes handle."""
    global _LIB, _LIB_PATH
    if _LIB is not None and path is None:
        return _LIB
    tried = [path] if path else _candidates()
    errors = []
    for cand in tried:
        if os.sep in cand and not os.path.exists(cand):
            errors.append("%s: no such file" % cand)
            continue
        try:
            lib = ctypes.CDLL(cand)
            _bind(lib)
        except (OSError, AttributeError) as e:
            errors.append("%s: %s" % (cand, e))
            continue
        _LIB, _LIB_PATH = lib, cand
        return lib
    raise OSError("paramount: cannot load libparamount (set PARAMOUNT_LIB); tried "
                  + "; ".join(errors or ["nothing"]))


def library_path():
    load()
    return _LIB_PATH


def _check(func, rc):
    if rc < 0:
        raise ParamountError(func, rc)
    return rc


def _u64(name, v):
    v = int(v)
    if v < 0 or v >= 1 << 64:
        raise ValueError("paramount: %s must be in 0..2**64-1, got %d" % (name, v))
    return v


def init():
    """Init begins; reads PARAMOUNT_* from the environment."""
    _check("pm_init", load().pm_init())


def init_end():
    _check("pm_init_end", load().pm_init_end())


def iter_begin(i):
    _check("pm_iter_begin", load().pm_iter_begin(_u64("iteration", i)))


def iter_end(compute_s=None, comm_s=None, samples=0):
    """None means unknown: compute is then the wall time less comm."""
    c = -1.0 if compute_s is None else float(compute_s)
    m = -1.0 if comm_s is None else float(comm_s)
    _check("pm_iter_end", load().pm_iter_end(c, m, _u64("samples", samples)))


def epoch_end(epoch, last_iter):
    _check("pm_epoch_end", load().pm_epoch_end(_u64("epoch", epoch),
                                                _u64("last_iter", last_iter)))


def phase(name, first_iter, planned_iters=0):
    _check("pm_phase", load().pm_phase(name.encode(), _u64("first_iter", first_iter),
                                        _u64("planned_iters", planned_iters)))


def checkpoint(path, it):
    _check("pm_checkpoint", load().pm_checkpoint(os.fsencode(path), _u64("iteration", it)))


def finalize():
    _check("pm_finalize", load().pm_finalize())


def stop_requested():
    """The iteration the controller wants the job to stop after, or None.
    2**64-1 means "as soon as the ranks agree"."""
    v = ctypes.c_uint64(0)
    return v.value if load().pm_stop_requested(ctypes.byref(v)) == 1 else None


def dropped_events():
    return int(load().pm_dropped_events())


def connected():
    return bool(load().pm_connected())


@contextlib.contextmanager
def session():
    """pm_init on entry, pm_finalize on exit (also on an exception)."""
    init()
    try:
        yield
    finally:
        finalize()


class iteration:
    """One paramount iteration: `with iteration(i, samples=n) as it:`.

    Inside, it.comm(seconds) adds communication/wait time, and
    `with it.communicating():` measures it; it.compute(seconds) sets the
    compute time (otherwise wall time less communication).  The iteration
    is reported on exit, also when the block raises."""

    def __init__(self, i, samples=0):
        self.i = _u64("iteration", i)
        self.samples = samples
        self._comm_s = None
        self._compute_s = None

    def comm(self, seconds):
        self._comm_s = (self._comm_s or 0.0) + float(seconds)

    def compute(self, seconds):
        self._compute_s = float(seconds)

    @contextlib.contextmanager
    def communicating(self):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.comm(time.perf_counter() - t0)

    def __enter__(self):
        iter_begin(self.i)
        return self

    def __exit__(self, *exc):
        iter_end(self._compute_s, self._comm_s, self.samples)
        return False
