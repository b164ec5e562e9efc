"""A CPU stand-in for CuPy 14 (test-only): NumPy arrays behind CuPy's signatures and rules.

It lets gridflow's GPU backend (and the engine over it) run on a machine without a GPU, so
the whole GPU path runs in CI: the test suite puts it in ``sys.modules`` for ``gpu``-marked
tests when no CUDA device is present, or always with ``GRIDFLOW_CUPY_STANDIN=1`` (see
``tests/conftest.py``). It is not an emulator of performance or of asynchrony.

What it enforces (``_standin.py``): CuPy's recorded signatures, no implicit host/device
conversions, 0-d results. Kernels (``cupy.RawModule``, ``_raw.py``): each launch is checked
against the kernel's C parameter list (argument count, C-contiguous device arrays of the
pointer's element type, NumPy scalars of the parameter's width) and runs the very ``.cu``
source compiled as host C++, or the kernel's NumPy twin where no C++ compiler is found.
Only what the GPU path uses is provided; anything else is an AttributeError, so a new use
must be added here with its CuPy signature.
"""

from __future__ import annotations

import numpy as _np
from cupy import _standin
from cupy._raw import RawKernel, RawModule
from cupy._standin import CUPY_VERSION, SIGNATURES, check_dtype, device, function, ndarray, ufunc, wrap

__version__ = CUPY_VERSION
STANDIN = True

# dtypes and constants, as CuPy re-exports NumPy's
bool_, int8, int16, int32, int64, uint8, uint32, uint64 = (_np.bool_, _np.int8, _np.int16, _np.int32, _np.int64,
                                                         _np.uint8, _np.uint32, _np.uint64)
float32, float64, complex64, complex128, intp = _np.float32, _np.float64, _np.complex64, _np.complex128, _np.intp
dtype, newaxis, nan, inf, pi, e = _np.dtype, _np.newaxis, _np.nan, _np.inf, _np.pi, _np.e


# ---------------------------------------------------------------------------------------------- creation


def _host_array(ba, copy_default):
    a = ba.arguments["a"] if "a" in ba.arguments else ba.arguments["obj"]
    dtype_ = ba.arguments.get("dtype")
    check_dtype(dtype_)
    src = a._a if isinstance(a, ndarray) else a
    order = ba.arguments.get("order") or "K"
    copy = ba.arguments.get("copy", copy_default)
    out = _np.array(src, dtype=dtype_, order=order, copy=copy, ndmin=ba.arguments.get("ndmin", 0))
    if out.dtype.kind in _standin._UNSUPPORTED_KINDS:
        raise ValueError(f"Unsupported dtype {out.dtype}")
    if out.dtype.byteorder == ">":
        out = out.astype(out.dtype.newbyteorder("="))
    return ndarray._of(out)


array = function("array", lambda ba: _host_array(ba, True))
asarray = function("asarray", lambda ba: _host_array(ba, None))
asanyarray = function("asanyarray", lambda ba: _host_array(ba, None))


def _asnumpy(ba):
    a = ba.arguments["a"]
    src = a._a if isinstance(a, ndarray) else _np.asarray(a)
    res = _np.array(src, order=ba.arguments.get("order", "C"), copy=True)
    out = ba.arguments.get("out")
    if out is not None:
        out[...] = res
        return out
    return res


asnumpy = function("asnumpy", _asnumpy)


def _contiguous(order):
    def impl(ba):
        a = ba.arguments["a"]
        if not isinstance(a, ndarray):
            raise TypeError(f"Unsupported type {type(a)} (cupy.ascontiguousarray needs a cupy.ndarray; stand-in)")
        check_dtype(ba.arguments.get("dtype"))
        conv = _np.ascontiguousarray if order == "C" else _np.asfortranarray
        res = conv(a._a, dtype=ba.arguments.get("dtype"))
        return a if res is a._a else ndarray._of(res)

    return impl


ascontiguousarray = function("ascontiguousarray", _contiguous("C"))
asfortranarray = function("asfortranarray", _contiguous("F"))


def _checked_creation(name):
    npfn = getattr(_np, name)

    def impl(ba):
        check_dtype(ba.arguments.get("dtype"))
        return wrap(_standin.call_numpy(npfn, ba))

    return impl


for _name in ("zeros", "ones", "empty", "full", "zeros_like", "ones_like", "empty_like", "full_like", "arange",
              "linspace", "eye", "identity"):
    globals()[_name] = function(_name, _checked_creation(_name))


def _where(ba):
    cond, x, y = (ba.arguments.get(k) for k in ("condition", "x", "y"))
    if (x is None) != (y is None):
        raise ValueError("Must provide with both x and y or neither.")
    if x is None:
        return wrap(_np.nonzero(device(cond, "condition")))
    return wrap(_np.where(device(cond, "condition"), device(x, "x"), device(y, "y")))


where = function("where", _where)


def _arg(npname):
    def impl(ba):
        a = device(ba.arguments["a"], "a")
        res = getattr(_np, npname)(a, axis=ba.arguments.get("axis"), keepdims=ba.arguments.get("keepdims", False))
        if ba.arguments.get("dtype") is not None:
            res = res.astype(ba.arguments["dtype"])
        out = ba.arguments.get("out")
        if out is not None:
            out[...] = wrap(res)
            return out
        return wrap(res)

    return impl


argmax = function("argmax", _arg("argmax"))
argmin = function("argmin", _arg("argmin"))
# indices may live on the host (CuPy converts them)
take = function("take", host=("indices",))


def get_default_memory_pool():
    return _POOL


def get_default_pinned_memory_pool():
    return _POOL


class _MemoryPool:
    """``cupy.get_default_memory_pool()``: nothing is pooled on the CPU."""

    def free_all_blocks(self, stream=None):
        return None

    def used_bytes(self):
        return 0

    def free_bytes(self):
        return 0

    def total_bytes(self):
        return 0

    def set_limit(self, size=None, fraction=None):
        return None


_POOL = _MemoryPool()


# ---------------------------------------------------------------------------------------------- the rest


def _populate():
    """Every other recorded CuPy function that NumPy has under the same name (ufuncs as ufuncs)."""
    g = globals()
    for full in SIGNATURES:
        parts = full.split(".")
        if len(parts) != 2 or parts[0] != "cupy":
            continue
        name = parts[1]
        if name in g or not hasattr(_np, name) or isinstance(getattr(_np, name), type):
            continue
        target = getattr(_np, name)
        if isinstance(target, _np.ufunc):
            g[name] = ufunc(name)
        elif callable(target):
            g[name] = function(name)


_populate()
del _populate

_standin.install_methods()

from cupy import cuda  # noqa: E402  (after the arrays exist)

__all__ = ["ndarray", "ufunc", "RawKernel", "RawModule", "asnumpy", "cuda", "STANDIN"]
