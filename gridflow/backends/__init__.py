"""Array backends: NumPy on the CPU, CuPy on a CUDA GPU.

The solver is written once over an array module ``xp``; :func:`get_xp` picks it.
Nothing here imports CuPy unless a GPU is asked for, so ``import gridflow`` works
without it. The GPU code (CUDA kernels, cuDSS) is :mod:`gridflow.backends.gpu`,
imported only when used.
"""

from __future__ import annotations

import functools

import numpy as np

from gridflow.errors import GridflowError

__all__ = ["get_xp", "gpu_available"]


@functools.cache
def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device; never raises."""
    try:
        import cupy
    except Exception:  # not installed, or a broken install (missing CUDA libraries)
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver, no device
        return False


def get_xp(backend: str = "cpu"):
    """The array module for ``backend``: "cpu"/"numpy" -> numpy, "gpu"/"cupy" -> cupy,
    "auto" -> cupy when a GPU is available, else numpy."""
    name = backend.lower()
    if name in ("cpu", "numpy"):
        return np
    if name in ("gpu", "cupy", "cuda", "auto"):
        if gpu_available():
            import cupy

            return cupy
        if name == "auto":
            return np
        raise GridflowError("backend 'gpu' needs CuPy and a CUDA device (pip install 'gridflow[gpu]')")
    raise GridflowError(f"unknown backend {backend!r}; choose from auto, cpu, gpu")
