"""Switching the CuPy stand-in (``cupy_standin/cupy``, ``cupy_standin/cupyx``) in and out of ``sys.modules``.

Which CuPy the ``gpu``-marked tests get (:func:`mode`, decided once per session):

* ``GRIDFLOW_CUPY_STANDIN=1``: the stand-in, even where a GPU is present;
* ``GRIDFLOW_CUPY_STANDIN=0``: the real CuPy and a CUDA device, or the tests skip;
* unset: the real CuPy where it sees a device, else the stand-in (so CI, without a GPU, runs
  the whole GPU path on the CPU).

The stand-in is put in place only around each ``gpu`` test (:func:`active`), so that no other
test sees a "GPU" (``backend="auto"`` would pick it).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
_PREFIXES = ("cupy", "cupyx", "cupy_backends", "nvmath")
#: gridflow modules that bind ``cupy`` at import: imported afresh under the stand-in, restored after
_BOUND = ("gridflow.backends.gpu",)
_MODULES: dict = {}
_MODE: list = []


def _ours(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in _PREFIXES)


def _gpu_cache_clear():
    from gridflow.backends import gpu_available

    gpu_available.cache_clear()


def mode() -> str:
    """"standin", "real" or "none" (see the module docstring)."""
    if not _MODE:
        env = os.environ.get("GRIDFLOW_CUPY_STANDIN", "").strip()
        if env == "1":
            _MODE.append("standin")
        else:
            from gridflow.backends import gpu_available

            real = gpu_available()
            _gpu_cache_clear()
            _MODE.append("real" if real else ("none" if env == "0" else "standin"))
    return _MODE[0]


def _load() -> dict:
    if not _MODULES:
        saved = {k: sys.modules.pop(k) for k in list(sys.modules) if _ours(k)}
        sys.path.insert(0, str(HERE))
        try:
            for name in ("cupy", "cupy.cuda", "cupy.cuda.runtime", "cupy._raw", "cupy._twins", "cupyx",
                         "cupyx.scipy", "cupyx.scipy.sparse", "cupyx.scipy.sparse.linalg"):
                importlib.import_module(name)
        finally:
            sys.path.remove(str(HERE))
            _MODULES.update({k: sys.modules.pop(k) for k in list(sys.modules) if _ours(k)})
            sys.modules.update(saved)
    return _MODULES


@contextlib.contextmanager
def active(extra: dict | None = None):
    """The stand-in as ``cupy``/``cupyx`` (and ``extra`` modules, e.g. a fake ``nvmath``) inside the block."""
    mods = dict(_load())
    mods.update(extra or {})
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if _ours(k) or k in mods or k in _BOUND}
    for k in _BOUND:
        parent, _, child = k.rpartition(".")
        if parent in sys.modules and hasattr(sys.modules[parent], child):
            delattr(sys.modules[parent], child)
    sys.modules.update(mods)
    _gpu_cache_clear()
    try:
        yield sys.modules["cupy"]
    finally:
        for k in [k for k in sys.modules if _ours(k) or k in mods or k in _BOUND]:
            del sys.modules[k]
        sys.modules.update(saved)
        for k in _BOUND:  # the package attribute too (``from gridflow.backends import gpu``)
            parent, _, child = k.rpartition(".")
            if parent in sys.modules:
                if k in saved:
                    setattr(sys.modules[parent], child, saved[k])
                elif hasattr(sys.modules[parent], child):
                    delattr(sys.modules[parent], child)
        _gpu_cache_clear()
