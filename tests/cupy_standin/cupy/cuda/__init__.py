"""``cupy.cuda`` stand-in: one "device" (the CPU), events timed with the host clock."""

from __future__ import annotations

import time

from cupy._standin import bind
from cupy.cuda import runtime


class Device:
    """``cupy.cuda.Device(device=None)``."""

    def __init__(self, *args, **kwargs):
        dev = bind("cupy.cuda.Device", args, kwargs).arguments.get("device")
        self.id = 0 if dev is None else int(dev)
        if self.id != 0:
            raise runtime.CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal (CuPy stand-in)")

    def synchronize(self, *args, **kwargs):
        bind("cupy.cuda.Device.synchronize", args, kwargs)

    def use(self, *args, **kwargs):
        bind("cupy.cuda.Device.use", args, kwargs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    @property
    def mem_info(self):
        return runtime.memGetInfo()

    @property
    def compute_capability(self):
        return "90"


class Event:
    """``cupy.cuda.Event(block=False, disable_timing=False, interprocess=False)``."""

    def __init__(self, *args, **kwargs):
        bind("cupy.cuda.Event", args, kwargs)
        self._t = None

    def record(self, *args, **kwargs):
        bind("cupy.cuda.Event.record", args, kwargs)
        self._t = time.perf_counter()

    def synchronize(self, *args, **kwargs):
        bind("cupy.cuda.Event.synchronize", args, kwargs)


def get_elapsed_time(*args, **kwargs):
    """Milliseconds between two recorded events."""
    ba = bind("cupy.cuda.get_elapsed_time", args, kwargs)
    start, end = ba.arguments["start_event"], ba.arguments["end_event"]
    if start._t is None or end._t is None:
        raise runtime.CUDARuntimeError("cudaErrorInvalidResourceHandle: event not recorded (CuPy stand-in)")
    return (end._t - start._t) * 1e3


__all__ = ["Device", "Event", "get_elapsed_time", "runtime"]
