"""The machinery of the CuPy stand-in: CuPy's recorded signatures, a device-array wrapper, function factories.

Every function and method the stand-in offers is built from the signature CuPy 14 really has
(``cupy_signatures.json``, recorded from the installed package by ``record_signatures.py``), so a
keyword CuPy lacks (``amax(..., initial=0.0)``, ``ufunc(..., where=...)``, ``gmres(tol=...)``)
raises TypeError here as it does there. The arrays are NumPy arrays inside :class:`ndarray`, a
wrapper that behaves as ``cupy.ndarray`` does where mistakes hide:

* no implicit device -> host conversion: ``numpy.asarray(x)`` raises TypeError (use ``.get()``,
  ``cupy.asnumpy``);
* no implicit host -> device conversion in computations: a ``numpy.ndarray`` operand of an
  arithmetic operator, ufunc or routine raises TypeError (CuPy: "Unsupported type"); NumPy
  arrays are accepted where CuPy accepts them (``cupy.asarray``/``array``, indices, values
  assigned with ``x[i] = ...``);
* reductions and scalar indexing give 0-d arrays, not Python/NumPy scalars;
* no ``__index__`` (``range(x)`` of a 0-d array is an error in CuPy too).
"""

from __future__ import annotations

import functools
import inspect
import json
from pathlib import Path

import numpy as np

_RECORD = json.loads((Path(__file__).resolve().parents[1] / "cupy_signatures.json").read_text())
SIGNATURES: dict = _RECORD["signatures"]
CUPY_VERSION: str = _RECORD["cupy_version"]

_KINDS = {k.name: k for k in inspect._ParameterKind}
_PY_TYPES = {"str": str, "tuple": tuple, "list": list, "dict": dict}


class _Default:
    """A recorded default (only its text: the stand-in passes on what the caller gave)."""

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return self.text


@functools.cache
def signature(name: str) -> inspect.Signature:
    """CuPy's signature of ``name`` (e.g. ``"cupy.amax"``, ``"cupy.ndarray.max"``); KeyError if not recorded."""
    params = []
    for pname, kind, default, _ctype in SIGNATURES[name]["params"]:
        d = inspect.Parameter.empty if default is None else _Default(default)
        params.append(inspect.Parameter(pname, _KINDS[kind], default=d))
    return inspect.Signature(params)


def ctypes_of(name: str) -> dict:
    """Cython-typed parameters of ``name`` whose Python type Cython checks (``tuple options`` ...)."""
    return {p: _PY_TYPES[c] for p, _k, _d, c in SIGNATURES[name]["params"] if c in _PY_TYPES}


def bind(name: str, args, kwargs) -> inspect.BoundArguments:
    """Bind a call as CuPy would: TypeError for an argument CuPy's ``name`` does not take."""
    sig = signature(name)
    try:
        ba = sig.bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"{name}{sig}: {e} (CuPy {CUPY_VERSION} signature; CuPy stand-in)") from None
    for pname, typ in ctypes_of(name).items():
        if pname in ba.arguments and ba.arguments[pname] is not None and not isinstance(ba.arguments[pname], typ):
            raise TypeError(f"{name}: argument '{pname}' has incorrect type (expected {typ.__name__}, got "
                            f"{type(ba.arguments[pname]).__name__})")
    return ba


# ---------------------------------------------------------------------------------------------- arrays

_UNSUPPORTED_KINDS = "OUSVM"


class MemoryPointer:
    """``x.data``: the device pointer (here the host address of the NumPy buffer)."""

    def __init__(self, a: np.ndarray):
        self.ptr = a.__array_interface__["data"][0]


class ndarray:  # noqa: N801 - CuPy's name
    """``cupy.ndarray`` on the CPU (see the module docstring)."""

    __slots__ = ("_a",)
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise NotImplementedError("CuPy stand-in: ndarray(memptr=, strides=) is not supported")
        self._a = np.empty(shape, dtype=dtype, order=order)

    @classmethod
    def _of(cls, a: np.ndarray) -> ndarray:
        obj = cls.__new__(cls)
        obj._a = a
        return obj

    # ---- attributes
    shape = property(lambda self: self._a.shape)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    dtype = property(lambda self: self._a.dtype)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    data = property(lambda self: MemoryPointer(self._a))
    T = property(lambda self: ndarray._of(self._a.T))
    _c_contiguous = property(lambda self: self._a.flags.c_contiguous)
    _f_contiguous = property(lambda self: self._a.flags.f_contiguous)

    @property
    def real(self):
        return ndarray._of(self._a.real)

    @real.setter
    def real(self, value):
        self._a.real = device(value, "real")

    @property
    def imag(self):
        return ndarray._of(self._a.imag)

    @imag.setter
    def imag(self, value):
        self._a.imag = device(value, "imag")

    @property
    def device(self):
        from cupy.cuda import Device

        return Device(0)

    # ---- conversions
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a "
                        "NumPy array explicitly.")

    def __bool__(self):
        return bool(self._a)

    def __int__(self):
        return int(self._a)

    def __float__(self):
        return float(self._a)

    def __complex__(self):
        return complex(self._a)

    def __len__(self):
        if self._a.ndim == 0:
            raise TypeError("len() of unsized object")
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self._a.shape[0]))

    def __repr__(self):
        return "standin." + repr(self._a)

    __str__ = __repr__

    # ---- indexing: NumPy arrays and lists are accepted as indices and values (CuPy converts them)
    def __getitem__(self, key):
        return wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        self._a[_index(key)] = value._a if isinstance(value, ndarray) else value

    # ---- NumPy protocols: as CuPy's, they hand NumPy calls on device arrays to the device functions
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        import cupy

        if method != "__call__":
            return NotImplemented
        fn = getattr(cupy, ufunc.__name__, None)
        if fn is None:
            return NotImplemented
        if "out" in kwargs:
            out = kwargs["out"]
            kwargs["out"] = out[0] if isinstance(out, tuple) and len(out) == 1 else out
        return fn(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        import cupy

        fn = getattr(cupy, func.__name__, None)
        if fn is None or not callable(fn):
            return NotImplemented
        return fn(*args, **kwargs)


def _index(key):
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if isinstance(key, ndarray):
        return key._a
    if isinstance(key, list):
        return [k._a if isinstance(k, ndarray) else k for k in key]
    if isinstance(key, np.ndarray) and key.dtype.kind not in "biu":
        raise IndexError(f"arrays used as indices must be of integer or boolean type (actual: {key.dtype.type})")
    return key


def device(value, where: str = "argument"):
    """A device operand as a NumPy array (or a scalar); TypeError for host arrays, as CuPy's kernels give."""
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, np.ndarray):
        raise TypeError(f"Unsupported type {type(value)} ({where}: a numpy.ndarray where CuPy needs a cupy.ndarray; "
                        "CuPy stand-in)")
    if isinstance(value, (list, tuple)):
        return type(value)(device(v, where) for v in value)
    return value


def wrap(result, out=None):
    """NumPy results as device arrays: arrays and NumPy scalars become :class:`ndarray` (0-d for scalars)."""
    if out is not None and isinstance(result, np.ndarray) and isinstance(out, ndarray) and result is out._a:
        return out
    if isinstance(result, np.ndarray):
        return ndarray._of(result)
    if isinstance(result, np.generic):
        return ndarray._of(np.asarray(result))
    if isinstance(result, tuple):
        return tuple(wrap(r) for r in result)
    if isinstance(result, list):
        return [wrap(r) for r in result]
    return result


def check_dtype(dtype):
    if dtype is not None and np.dtype(dtype).kind in _UNSUPPORTED_KINDS:
        raise ValueError(f"Unsupported dtype {np.dtype(dtype)}")


# ---------------------------------------------------------------------------------------------- functions


def call_numpy(fn, ba: inspect.BoundArguments, *, host=()):
    """Call the NumPy function ``fn`` with the arguments the caller gave (device operands unwrapped).

    Leading positional-or-keyword arguments go by position (NumPy's names differ in places, e.g.
    ``where``), the rest by keyword. ``host``: parameters that may hold host data.
    """
    args, kwargs, positional = [], {}, True
    for pname, param in ba.signature.parameters.items():
        if pname not in ba.arguments:
            if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
                positional = False
            continue
        value = ba.arguments[pname]
        conv = (lambda v: v._a if isinstance(v, ndarray) else v) if pname in host else (
            lambda v, p=pname: device(v, p))
        if param.kind == param.VAR_POSITIONAL:
            args.extend(conv(v) for v in value)
        elif param.kind == param.VAR_KEYWORD:
            kwargs.update({k: conv(v) for k, v in value.items()})
        elif param.kind == param.POSITIONAL_ONLY or (param.kind == param.POSITIONAL_OR_KEYWORD and positional):
            args.append(conv(value))
        else:
            kwargs[pname] = conv(value)
    return fn(*args, **kwargs)


def function(name: str, impl=None, *, host=()):
    """The stand-in of ``cupy.<name>`` (CuPy's signature; NumPy's function of that name unless ``impl``)."""
    full = f"cupy.{name}"
    signature(full)  # KeyError: not a CuPy 14 function

    if impl is None:
        npfn = getattr(np, name)

        def impl(ba):
            return wrap(call_numpy(npfn, ba, host=host), ba.arguments.get("out"))

    @functools.wraps(impl)
    def fn(*args, **kwargs):
        return impl(bind(full, args, kwargs))

    fn.__name__ = name
    fn.__qualname__ = name
    fn.__signature__ = signature(full)
    fn.__doc__ = f"CuPy stand-in for cupy.{name}{signature(full)}"
    return fn


class ufunc:  # noqa: N801 - CuPy's name
    """A stand-in ``cupy.ufunc``: CuPy's call signature (no ``where=``), NumPy's arithmetic."""

    def __init__(self, name: str):
        self.__name__ = name
        self._np = getattr(np, name)
        self._full = f"cupy.{name}"
        self.nin, self.nout = self._np.nin, self._np.nout
        self.__signature__ = signature(self._full)

    def __call__(self, *args, **kwargs):
        ba = bind(self._full, args, kwargs)
        return wrap(call_numpy(self._np, ba), ba.arguments.get("out"))

    def __repr__(self):
        return f"<ufunc 'cupy_{self.__name__}' (CuPy stand-in)>"


def method(name: str, impl=None):
    """The stand-in of ``cupy.ndarray.<name>`` (CuPy's signature; NumPy's method unless ``impl``)."""
    full = f"cupy.ndarray.{name}"
    signature(full)

    def fn(self, *args, **kwargs):
        ba = bind(full, args, kwargs)
        if impl is not None:
            return impl(self, ba)
        return wrap(call_numpy(getattr(self._a, name), ba), ba.arguments.get("out"))

    fn.__name__ = name
    fn.__signature__ = signature(full)
    return fn


def _binary(ufname, reflected=False, inplace=False):
    def op(self, other):
        import cupy

        uf = getattr(cupy, ufname)
        if inplace:
            return uf(self, other, out=self)
        return uf(other, self) if reflected else uf(self, other)

    return op


def _unary(ufname):
    def op(self):
        import cupy

        return getattr(cupy, ufname)(self)

    return op


for _dunder, _uf in (("add", "add"), ("sub", "subtract"), ("mul", "multiply"), ("truediv", "true_divide"),
                     ("floordiv", "floor_divide"), ("mod", "remainder"), ("pow", "power"), ("matmul", "matmul"),
                     ("and", "bitwise_and"), ("or", "bitwise_or"), ("xor", "bitwise_xor")):
    setattr(ndarray, f"__{_dunder}__", _binary(_uf))
    setattr(ndarray, f"__r{_dunder}__", _binary(_uf, reflected=True))
    setattr(ndarray, f"__i{_dunder}__", _binary(_uf, inplace=True))
for _dunder, _uf in (("lt", "less"), ("le", "less_equal"), ("gt", "greater"), ("ge", "greater_equal"),
                     ("eq", "equal"), ("ne", "not_equal")):
    setattr(ndarray, f"__{_dunder}__", _binary(_uf))
for _dunder, _uf in (("neg", "negative"), ("pos", "positive"), ("abs", "absolute"), ("invert", "invert")):
    setattr(ndarray, f"__{_dunder}__", _unary(_uf))


# ---------------------------------------------------------------------------------------------- methods


def _get(self, ba):
    res = np.array(self._a, order=ba.arguments.get("order", "C"), copy=True)
    out = ba.arguments.get("out")
    if out is not None:
        if not isinstance(out, np.ndarray) or out.shape != res.shape:
            raise ValueError("out must be a numpy.ndarray of the array's shape")
        out[...] = res
        return out
    return res


def _set(self, ba):
    arr = ba.arguments["arr"]
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray (actual: {type(arr)})")
    if arr.shape != self._a.shape:
        raise ValueError(f"Shape mismatch. Old shape: {self._a.shape}, new shape: {arr.shape}")
    if arr.dtype != self._a.dtype:
        raise TypeError(f"{arr.dtype} array cannot be set to {self._a.dtype} array")
    self._a[...] = arr


def _astype(self, ba):
    check_dtype(ba.arguments["dtype"])
    kw = {k: v for k, v in ba.arguments.items() if k != "dtype" and v is not None}
    return wrap(self._a.astype(ba.arguments["dtype"], **kw))


def _view(self, ba):
    if ba.arguments.get("array_class") is not None:
        raise NotImplementedError("CuPy stand-in: view(array_class=)")
    dt = ba.arguments.get("dtype")
    return wrap(self._a.view() if dt is None else self._a.view(dt))


def _argreduce(npname):
    def impl(self, ba):
        res = getattr(self._a, npname)(axis=ba.arguments.get("axis"), keepdims=ba.arguments.get("keepdims", False))
        if ba.arguments.get("dtype") is not None:
            res = res.astype(ba.arguments["dtype"])
        return wrap(res)

    return impl


def _take(self, ba):
    ind = ba.arguments["indices"]
    ind = ind._a if isinstance(ind, ndarray) else ind  # indices may be host data (CuPy converts them)
    out = ba.arguments.get("out")
    return wrap(self._a.take(ind, axis=ba.arguments.get("axis"), out=None if out is None else out._a), out)


_METHOD_IMPLS = {"get": _get, "set": _set, "astype": _astype, "view": _view, "argmax": _argreduce("argmax"),
                 "argmin": _argreduce("argmin"), "take": _take}


def install_methods():
    """Put every recorded ``cupy.ndarray`` method on :class:`ndarray` (CuPy's signature, NumPy's arithmetic)."""
    for full in SIGNATURES:
        parts = full.split(".")
        if len(parts) != 3 or parts[:2] != ["cupy", "ndarray"] or parts[2].startswith("__"):
            continue
        name = parts[2]
        if name in _METHOD_IMPLS or hasattr(np.ndarray, name):
            setattr(ndarray, name, method(name, _METHOD_IMPLS.get(name)))
