"""``cupy.cuda.runtime`` stand-in: one device; its memory is what ``GRIDFLOW_STANDIN_MEM_GIB`` says (default 16)."""

from __future__ import annotations

import os

from cupy._standin import bind


class CUDARuntimeError(RuntimeError):
    pass


def _total() -> int:
    return int(float(os.environ.get("GRIDFLOW_STANDIN_MEM_GIB", "16")) * 2 ** 30)


def getDeviceCount(*args, **kwargs):  # noqa: N802 - CUDA's name
    bind("cupy.cuda.runtime.getDeviceCount", args, kwargs)
    return 1


def getDevice(*args, **kwargs):  # noqa: N802
    bind("cupy.cuda.runtime.getDevice", args, kwargs)
    return 0


def setDevice(*args, **kwargs):  # noqa: N802
    if bind("cupy.cuda.runtime.setDevice", args, kwargs).arguments["device"] != 0:
        raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal (CuPy stand-in)")


def memGetInfo(*args, **kwargs):  # noqa: N802
    """(free, total) bytes."""
    bind("cupy.cuda.runtime.memGetInfo", args, kwargs)
    return _total(), _total()


def deviceSynchronize(*args, **kwargs):  # noqa: N802
    bind("cupy.cuda.runtime.deviceSynchronize", args, kwargs)


def runtimeGetVersion(*args, **kwargs):  # noqa: N802
    bind("cupy.cuda.runtime.runtimeGetVersion", args, kwargs)
    return 13000


def driverGetVersion(*args, **kwargs):  # noqa: N802
    bind("cupy.cuda.runtime.driverGetVersion", args, kwargs)
    return 13000


def getDeviceProperties(*args, **kwargs):  # noqa: N802
    """The keys CuPy 14 fills (a subset); ``name`` is bytes, as in CuPy."""
    dev = bind("cupy.cuda.runtime.getDeviceProperties", args, kwargs).arguments["device"]
    if not isinstance(dev, int):
        raise TypeError("an integer is required")
    if dev != 0:
        raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal (CuPy stand-in)")
    return {"name": b"CuPy stand-in (CPU)", "totalGlobalMem": _total(), "multiProcessorCount": os.cpu_count() or 1,
            "major": 9, "minor": 0, "memoryClockRate": 0, "memoryBusWidth": 0, "l2CacheSize": 0}
