"""``cupy.RawModule`` / ``RawKernel`` on the CPU: checked launches of the ``.cu`` sources.

A launch is checked against the kernel's C parameter list, parsed from the source, the way a
wrong launch would misbehave on a GPU (silently, there):

* the argument count;
* a pointer takes a C-contiguous device array of the pointer's element type (``double2`` ->
  complex128, ``double`` -> float64, ``int`` -> int32, ``long long``/``i64`` -> int64, ``signed
  char`` -> int8, ``bool`` -> bool, ``unsigned char`` -> uint8 or bool). CuPy passes ``x.data.ptr``
  and ignores views, so a transposed or sliced view would be misread; a ``numpy.ndarray`` of
  more than one element is refused by CuPy, one of one element would be passed by value;
* a scalar takes a NumPy scalar of the parameter's type, or a Python int for ``long long`` and a
  Python float for ``double`` (CuPy passes Python ints as int64 and floats as float64: an
  ``int`` parameter given a Python int reads half of it);
* ``grid`` and ``block`` are tuples (``cupy.cuda.Function.__call__`` takes ``tuple grid``).

It then runs the kernel: the source compiled as host C++ with a shim for the CUDA keywords
(each kernel is a grid-stride loop, so one "thread" sweeps it all), when a C++ compiler is
found (``$CXX``, ``g++``, ``c++``, ``clang++``); else the kernel's NumPy twin
(``cupy/_twins.py``). ``GRIDFLOW_STANDIN_KERNELS=twin`` or ``=host`` forces one.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from cupy._standin import bind, ndarray

_KERNEL_RE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', re.S)
_TYPEDEFS_RE = re.compile(r"typedef\s+([\w\s]+?)\s+(\w+)\s*;")
_POINTEE = {"double2": ("complex128",), "double": ("float64",), "float": ("float32",), "int": ("int32",),
            "long long": ("int64",), "signed char": ("int8",), "char": ("int8",), "bool": ("bool",),
            "unsigned char": ("uint8", "bool"), "unsigned int": ("uint32",), "unsigned long long": ("uint64",)}
_SCALAR = {"double": (ctypes.c_double, np.float64, float), "float": (ctypes.c_float, np.float32, None),
           "int": (ctypes.c_int, np.int32, None), "long long": (ctypes.c_longlong, np.int64, int),
           "unsigned int": (ctypes.c_uint, np.uint32, None), "bool": (ctypes.c_bool, np.bool_, bool),
           "unsigned long long": (ctypes.c_ulonglong, np.uint64, None)}

SHIM = """
#include <cmath>
struct double2 { double x, y; };
static inline double2 make_double2(double x, double y) { double2 r; r.x = x; r.y = y; return r; }
struct gf_dim3 { unsigned x, y, z; };
static const gf_dim3 threadIdx = {0, 0, 0}, blockIdx = {0, 0, 0}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
using std::hypot;
"""


class Param:
    def __init__(self, text: str, typedefs: dict):
        t = text.replace("__restrict__", " ").replace("const", " ")
        self.pointer = "*" in t
        t = t.replace("*", " ")
        words = t.split()
        self.name = words[-1]
        base = " ".join(words[:-1])
        self.ctype = typedefs.get(base, base)

    def __repr__(self):
        return f"{self.ctype}{'*' if self.pointer else ''} {self.name}"


def parse_kernels(code: str) -> dict[str, list[Param]]:
    """``{kernel name: its parameters}`` for every ``extern "C" __global__`` function in ``code``."""
    typedefs = {alias: " ".join(base.split()) for base, alias in _TYPEDEFS_RE.findall(code)}
    return {name: [Param(p, typedefs) for p in params.split(",") if p.strip()]
            for name, params in _KERNEL_RE.findall(code)}


def _compiler():
    for c in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if c and shutil.which(c):
            return shutil.which(c)
    return None


def kernel_mode() -> str:
    """How kernels run here: "host" (compiled C++) or "twin" (NumPy)."""
    forced = os.environ.get("GRIDFLOW_STANDIN_KERNELS", "").strip().lower()
    if forced in ("host", "twin"):
        if forced == "host" and _compiler() is None:
            raise RuntimeError("GRIDFLOW_STANDIN_KERNELS=host but no C++ compiler was found")
        return forced
    return "host" if _compiler() is not None else "twin"


_LIBS: dict[str, ctypes.CDLL] = {}


def compile_host(code: str) -> ctypes.CDLL:
    """The CUDA source ``code`` compiled as a host shared library (cached by content for this process)."""
    key = hashlib.sha256(code.encode()).hexdigest()[:16]
    lib = _LIBS.get(key)
    if lib is None:
        d = Path(tempfile.gettempdir()) / f"gridflow-standin-{os.getuid()}"
        d.mkdir(exist_ok=True)
        so = d / f"kernels-{key}.so"
        if not so.exists():
            src = d / f"kernels-{key}.cpp"
            src.write_text(SHIM + code)
            tmp = d / f"kernels-{key}.{os.getpid()}.so"
            cmd = [_compiler(), "-O2", "-fPIC", "-shared", "-std=c++17", "-Wall", "-Werror", "-o", str(tmp), str(src)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"the CUDA source does not compile as host C++:\n{r.stderr}")
            os.replace(tmp, so)
        lib = _LIBS[key] = ctypes.CDLL(str(so))
    return lib


class RawModule:
    """``cupy.RawModule(*, code=None, path=None, options=(), ...)``: compiled lazily, per kernel."""

    def __init__(self, *args, **kwargs):
        ba = bind("cupy.RawModule", args, kwargs)
        code, path = ba.arguments.get("code"), ba.arguments.get("path")
        if (code is None) == (path is None):
            raise TypeError("Exactly one of code and path keyword arguments must be given.")
        if path is not None:
            raise NotImplementedError("CuPy stand-in: RawModule(path=) (cubin/ptx) cannot run on the CPU")
        self.code = code
        self.options = ba.arguments.get("options", ())
        self._params = parse_kernels(code)

    def get_function(self, *args, **kwargs):
        name = bind("cupy.RawModule.get_function", args, kwargs).arguments["name"]
        if not isinstance(name, str):
            raise TypeError("Argument 'name' has incorrect type (expected str)")
        if name not in self._params:
            raise RuntimeError(f"CUDA_ERROR_NOT_FOUND: named symbol not found ({name}; CuPy stand-in)")
        return RawKernel._from_module(self, name)


class RawKernel:
    """A kernel of a :class:`RawModule` (``cupy.RawKernel(code, name)`` works too)."""

    def __init__(self, code, name, options=(), backend="nvrtc", **kwargs):
        self._module = RawModule(code=code, options=tuple(options))
        self.name = name
        self.params = self._module._params[name]

    @classmethod
    def _from_module(cls, module: RawModule, name: str):
        k = cls.__new__(cls)
        k._module, k.name, k.params = module, name, module._params[name]
        return k

    def __call__(self, *args, **kwargs):
        ba = bind("cupy.RawKernel.__call__", args, kwargs)
        extra = dict(ba.arguments.get("kwargs", {}))
        bind("cupy.cuda.Function.__call__", (ba.arguments["grid"], ba.arguments["block"], ba.arguments["args"]),
             extra)
        grid, block, kargs = ba.arguments["grid"], ba.arguments["block"], ba.arguments["args"]
        for what, dims in (("grid", grid), ("block", block)):
            if not (1 <= len(dims) <= 3 and all(isinstance(v, (int, np.integer)) and v >= 0 for v in dims)):
                raise ValueError(f"{self.name}: {what} must be a tuple of 1 to 3 non-negative ints, not {dims!r}")
        if int(np.prod(block)) > 1024:
            raise ValueError(f"{self.name}: a block of {int(np.prod(block))} threads (at most 1024)")
        values = self.check(kargs)
        if kernel_mode() == "host":
            fn = getattr(compile_host(self._module.code), self.name)
            fn.restype = None
            fn(*values)
        else:
            from cupy._twins import TWINS

            twin = TWINS.get(self.name)
            if twin is None:
                raise NotImplementedError(f"no NumPy twin for kernel {self.name} (cupy/_twins.py)")
            twin(*[a._a if isinstance(a, ndarray) else a for a in kargs])

    def check(self, kargs) -> list:
        """Check the launch arguments against the C parameters; their ctypes values."""
        if not isinstance(kargs, (tuple, list)):
            raise TypeError(f"{self.name}: args must be a tuple")
        if len(kargs) != len(self.params):
            raise TypeError(f"{self.name} takes {len(self.params)} arguments ({self.params}), {len(kargs)} given")
        values = []
        for p, a in zip(self.params, kargs, strict=True):
            where = f"kernel {self.name}, parameter {p}"
            if p.pointer:
                if isinstance(a, np.ndarray):
                    raise TypeError(f"{where}: a numpy.ndarray of shape {a.shape} (CuPy passes device arrays only)")
                if not isinstance(a, ndarray):
                    raise TypeError(f"{where}: {type(a).__name__} where a cupy.ndarray is needed")
                allowed = _POINTEE.get(p.ctype)
                if allowed is None:
                    raise TypeError(f"{where}: the stand-in does not know the C type {p.ctype}")
                if a.dtype.name not in allowed:
                    raise TypeError(f"{where}: a {a.dtype} array where the kernel reads {p.ctype}")
                if not a._a.flags.c_contiguous:
                    raise ValueError(f"{where}: the array is not C-contiguous (a RawKernel ignores views: it would "
                                     "read the underlying buffer in memory order)")
                values.append(ctypes.c_void_p(a._a.ctypes.data))
            else:
                spec = _SCALAR.get(p.ctype)
                if spec is None:
                    raise TypeError(f"{where}: the stand-in does not know the C type {p.ctype}")
                ct, npt, pyt = spec
                if isinstance(a, np.generic) and a.dtype == np.dtype(npt):
                    values.append(ct(a.item()))
                elif pyt is not None and type(a) is pyt:
                    values.append(ct(a))
                else:
                    raise TypeError(f"{where}: got {type(a).__name__}"
                                    f"{' ' + str(a.dtype) if hasattr(a, 'dtype') else ''}; pass numpy.{npt.__name__}")
        return values
