"""Sparse direct solvers behind one interface, made for Newton's method.

``solver = make_solver(name, pattern)`` is built once per Jacobian pattern;
every iteration calls ``solver.factorize(data)`` with new values in that
pattern and ``solver.solve(b)``.

CPU choices (measured, see ``bench/RESULTS.md``):

* ``"klu"`` — SuiteSparse KLU (BTF + AMD ordering, left-looking LU made for
  circuit matrices). The ordering and symbolic analysis run once
  (``klu_analyze``); the first factorization pivots (``klu_factor``); later
  ones reuse its pivot order (``klu_refactor``), about 3x faster, and fall back
  to a fresh pivoting factorization when the refactorization is poorly
  conditioned. KLU is called through :mod:`ctypes` from the shared library
  that the ``kvxopt`` wheel ships (or a system ``libklu``): no PyPI binding
  exposes ``klu_refactor``.
* ``"superlu"`` — SciPy's SuperLU with minimum-degree ordering on A^T + A,
  the fallback when no KLU library is found (3-4x slower per factorization).

The GPU solver (cuDSS) lives with the GPU backend.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from gridflow.errors import GridflowError


class SingularJacobian(GridflowError):
    """The Jacobian could not be factorized (singular or not finite)."""

    exit_code = 3


# ---------------------------------------------------------------- KLU via ctypes

_KLU_RCOND_MIN = 1e-14  # below this a refactorization (no pivoting) is redone with pivoting


class _KluCommon(ctypes.Structure):
    """``klu_common`` of SuiteSparse KLU 1.x (int version)."""

    _fields_ = [(f, ctypes.c_double) for f in ("tol", "memgrow", "initmem_amd", "initmem", "maxwork")] + [
        ("btf", ctypes.c_int), ("ordering", ctypes.c_int), ("scale", ctypes.c_int),
        ("user_order", ctypes.c_void_p), ("user_data", ctypes.c_void_p),
        ("halt_if_singular", ctypes.c_int), ("status", ctypes.c_int), ("nrealloc", ctypes.c_int),
        ("structural_rank", ctypes.c_int), ("numerical_rank", ctypes.c_int),
        ("singular_col", ctypes.c_int), ("noffdiag", ctypes.c_int),
    ] + [(f, ctypes.c_double) for f in ("flops", "rcond", "condest", "rgrowth", "work")] + [
        ("memusage", ctypes.c_size_t), ("mempeak", ctypes.c_size_t), ("_spare", ctypes.c_char * 256),
    ]


def _find_klu():
    candidates = []
    try:
        import kvxopt

        libs = os.path.join(os.path.dirname(kvxopt.__file__), os.pardir, "kvxopt.libs")
        candidates += sorted(glob.glob(os.path.join(libs, "libklu*.so*")))
    except ImportError:
        pass
    name = ctypes.util.find_library("klu")
    if name:
        candidates.append(name)
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
            _declare(lib)
            return lib
        except (OSError, AttributeError):
            continue
    return None


def _declare(lib):
    p, i = ctypes.c_void_p, ctypes.c_int
    lib.klu_defaults.argtypes = [p]
    lib.klu_analyze.restype = p
    lib.klu_analyze.argtypes = [i, p, p, p]
    lib.klu_factor.restype = p
    lib.klu_factor.argtypes = [p, p, p, p, p]
    lib.klu_refactor.restype = i
    lib.klu_refactor.argtypes = [p, p, p, p, p, p]
    lib.klu_rcond.restype = i
    lib.klu_rcond.argtypes = [p, p, p]
    lib.klu_solve.restype = i
    lib.klu_solve.argtypes = [p, p, i, i, p, p]
    lib.klu_free_symbolic.argtypes = [p, p]
    lib.klu_free_numeric.argtypes = [p, p]


_klu = _find_klu()


class KLUSymbolic:
    """KLU's ordering and symbolic analysis of one pattern: immutable once built, shared by threads.

    ``klu_factor``/``klu_refactor``/``klu_solve`` only read the symbolic object; each
    :class:`KLUSolver` made from it owns its numeric factorization and its ``klu_common``
    (KLU writes status fields there), so solvers made from one analysis may run in different
    threads at once.
    """

    def __init__(self, pattern):
        if pattern.fmt != "csc":
            raise ValueError("KLU needs a CSC pattern")
        self.n = pattern.n
        self.indptr = np.ascontiguousarray(pattern.indptr, dtype=np.int32)
        self.indices = np.ascontiguousarray(pattern.indices, dtype=np.int32)
        self._common = _KluCommon()
        _klu.klu_defaults(ctypes.byref(self._common))
        self.handle = ctypes.c_void_p(_klu.klu_analyze(self.n, self.indptr.ctypes.data, self.indices.ctypes.data,
                                                       ctypes.byref(self._common)))
        if not self.handle.value:
            raise SingularJacobian("KLU could not analyse the Jacobian's pattern")

    def __del__(self):
        if _klu is not None and getattr(self, "handle", None) is not None and self.handle.value:
            _klu.klu_free_symbolic(ctypes.byref(self.handle), ctypes.byref(self._common))


class KLUSolver:
    """One numeric KLU factorization on a shared :class:`KLUSymbolic`: refactorization per call.

    Not thread-safe itself (it holds one factorization); make one per thread.
    """

    name = "klu"

    def __init__(self, pattern, symbolic: KLUSymbolic | None = None):
        self.symbolic = symbolic if symbolic is not None else KLUSymbolic(pattern)
        self.n = self.symbolic.n
        self._common = _KluCommon()
        _klu.klu_defaults(ctypes.byref(self._common))
        self._numeric = ctypes.c_void_p(None)
        self._data = None

    def factorize(self, data):
        sym = self.symbolic
        self._data = np.ascontiguousarray(data, dtype=np.float64)
        args = (sym.indptr.ctypes.data, sym.indices.ctypes.data, self._data.ctypes.data, sym.handle)
        if self._numeric.value:
            ok = _klu.klu_refactor(*args, self._numeric, ctypes.byref(self._common))
            if ok and _klu.klu_rcond(sym.handle, self._numeric, ctypes.byref(self._common)) \
                    and self._common.rcond > _KLU_RCOND_MIN:
                return self
            _klu.klu_free_numeric(ctypes.byref(self._numeric), ctypes.byref(self._common))
        self._numeric = ctypes.c_void_p(_klu.klu_factor(*args, ctypes.byref(self._common)))
        if not self._numeric.value or self._common.status != 0:
            self._numeric = ctypes.c_void_p(None) if not self._numeric.value else self._numeric
            raise SingularJacobian("the Jacobian is singular (KLU)")
        return self

    def solve(self, b):
        """x with J x = b; b (n,) or (n, k), float64."""
        x = np.array(b, dtype=np.float64, order="F", copy=True)
        nrhs = 1 if x.ndim == 1 else x.shape[1]
        _klu.klu_solve(self.symbolic.handle, self._numeric, self.n, nrhs, x.ctypes.data, ctypes.byref(self._common))
        return x

    def __del__(self):
        if _klu is None:
            return
        if getattr(self, "_numeric", None) is not None and self._numeric.value:
            _klu.klu_free_numeric(ctypes.byref(self._numeric), ctypes.byref(self._common))


# ---------------------------------------------------------------- SuperLU

class SuperLUSolver:
    """SciPy's SuperLU; every factorization repeats ordering and analysis."""

    name = "superlu"

    def __init__(self, pattern):
        self.pattern = pattern
        self._lu = None

    def factorize(self, data):
        pat = self.pattern
        cls = sp.csc_matrix if pat.fmt == "csc" else sp.csr_matrix
        A = cls((data, pat.indices, pat.indptr), shape=(pat.n, pat.n)).tocsc()
        try:
            self._lu = spla.splu(A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                                 options={"SymmetricMode": True})
        except RuntimeError as e:
            raise SingularJacobian(f"the Jacobian is singular ({e})") from None
        return self

    def solve(self, b):
        return self._lu.solve(np.asarray(b, dtype=np.float64))


def available() -> list[str]:
    """CPU linear solvers usable here, the default first."""
    return (["klu"] if _klu is not None else []) + ["superlu"]


def resolve_name(name: str) -> str:
    """The solver ``name`` stands for ("auto" -> the first of :func:`available`); unknown names raise."""
    if name == "auto":
        return available()[0]
    if name == "klu":
        if _klu is None:
            raise GridflowError("linear solver 'klu' needs a KLU library (pip install kvxopt)")
        return name
    if name == "superlu":
        return name
    raise GridflowError(f"unknown linear solver {name!r}; choose from auto, {', '.join(available())}")


def analyze(name: str, pattern):
    """The shareable symbolic analysis of ``pattern`` for solver ``name`` (None where the solver has none)."""
    return KLUSymbolic(pattern) if resolve_name(name) == "klu" and pattern.n else None


def make_solver(name: str, pattern, symbolic=None):
    """A CPU sparse LU for matrices with ``pattern``; ``name``: "auto", "klu" or "superlu".

    ``symbolic``: an analysis from :func:`analyze` to share (KLU); each solver returned holds its own
    numeric factorization, so give every thread its own solver.
    """
    name = resolve_name(name)
    if name == "klu":
        return KLUSolver(pattern, symbolic)
    return SuperLUSolver(pattern)


def solve_checked(lu, b: np.ndarray) -> np.ndarray:
    """``lu.solve(b)``; a non-finite answer means the Jacobian was singular."""
    x = lu.solve(b)
    if not np.all(np.isfinite(x)):
        raise SingularJacobian("the Jacobian is singular (the Newton step is not finite)")
    return x
