"""GPU backend: the batched Newton's stages as CUDA kernels, and a batched cuDSS solver.

Imported only when the GPU is used (it imports CuPy; ``import gridflow`` never does).

Kernels
-------
The CUDA C sources are ``kernels/*.cu`` (every ``extern "C" __global__ void
gridflow_*`` in them). Each file is compiled by NVRTC through ``cupy.RawModule``
the first time one of its kernels is used on a device; CuPy keeps the binaries
in its disk cache (``~/.cupy/kernel_cache``), so later processes skip the
compilation. :func:`kernel_dir` finds the folder: ``$GRIDFLOW_KERNEL_DIR``, else
the package ``gridflow.kernels`` when the install maps ``kernels/`` to it
(pyproject's ``package-dir``: a wheel ships the sources as package data, an
editable install points at the repository's folder), else ``kernels/`` at the
top of the source tree (a checkout on ``PYTHONPATH``).

Wrapper API (stable: :mod:`gridflow.batch` calls it)
----------------------------------------------------
Arrays are CuPy device arrays (NumPy inputs are copied to the device),
complex128 or float64, C-contiguous, scenario axis first: T scenarios, nb buses,
n = npv + 2 npq unknowns, per unit. Every call is asynchronous on CuPy's current
stream.

``mismatch(Ybus, V, Sbus) -> (mis, Ibus)``
    ``Ibus = Ybus V`` and ``mis = V conj(Ibus) - Sbus``, complex128, shaped like
    ``V`` ((T, nb) or (nb,)). ``Ybus``: ``cupyx.scipy.sparse.csr_matrix``
    complex128 (nb, nb) with int32 indices (:func:`to_device_csr`; a SciPy matrix
    is accepted but copied to the device on every call). ``Sbus``: (T, nb), or
    (nb,) shared by all scenarios. Twin of :func:`gridflow.newton.mismatch`
    (batched: ``V * conj((Ybus @ V.T).T) - Sbus``).

``jacobian_values(V, Ibus, Ydata, Yrow, Ycol, pattern, xp=None, *, out=None) -> J``
    J's values, float64 (T, nnzJ) in ``pattern``'s order ((nnzJ,) for a 1-D
    ``V``); the arguments of :func:`gridflow.jacobian.jacobian_values` (``xp`` is
    ignored). Works for CSR and CSC patterns alike. ``out``: a C-contiguous
    float64 (T, nnzJ) array to fill instead of a new one, e.g.
    ``CuDSSBatchSolver.values[:T]`` (no copy before the factorization).

``update_voltage(Va, Vm, V, dx, pvpq, pq, *, active=None, step=None, positions=None) -> (Va, Vm, V)``
    In place, for every scenario t with ``active[t]``::

        Va[t, pvpq] += step[t] * dx[t, :npvpq]
        Vm[t, pq]   += step[t] * dx[t, npvpq:]
        V[t]         = Vm[t] * exp(1j * Va[t])

    ``Va``, ``Vm`` float64 (T, nb), ``V`` complex128 (T, nb), ``dx`` float64
    (T, n); ``active`` bool (T,), default all; ``step`` float64 (T,) or a
    scalar, default 1 (newtonpf's ``dx = -J^-1 F`` convention; pass a negative
    step for ``dx = J^-1 F``). ``positions``: :func:`unknown_positions`'s result,
    to skip rebuilding it on every call.

``max_abs(F) -> float64 (T,)``
    ``||F[t]||_inf`` per row; NaN for a row holding a NaN, 0 when n == 0.

``CuDSSBatchSolver(pattern, batch_size)``
    T = ``batch_size`` sparse LUs with J's CSR pattern through cuDSS
    (nvmath-python's ``DirectSolver``): ``factorize(data=None) -> self`` with
    ``data`` float64 (T, nnzJ) (None: the values already written into
    ``.values``), ``solve(b) -> x`` with b, x float64 (T, n). Planned once.

``GPUOps(prep, T)``
    The batch Newton's operations on the GPU, the twin of
    :class:`gridflow.batch.CPUOps`: ``xp``, ``mismatch(V, Sbus)``,
    ``newton_step(V, Ibus, F)``, ``set_chord(V, Ibus)``, ``chord_step(F)``,
    ``to_device(a)``, ``to_host(a)``, ``close()``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import sys
import weakref
from pathlib import Path

import cupy as cp
import numpy as np

from gridflow.errors import GridflowError
from gridflow.jacobian import jacobian_pattern

__all__ = [
    "kernel_dir", "get_kernel", "to_device_csr", "mismatch", "jacobian_values", "unknown_positions",
    "update_voltage", "max_abs", "cudss_available", "CuDSSBatchSolver", "GPUOps",
]

log = logging.getLogger(__name__)

_BLOCK = 256
_MAX_GRID = 1 << 20  # the kernels are grid-stride loops; more blocks than this buys nothing
_KERNEL_RE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(gridflow_\w+)\s*\(')

# ---------------------------------------------------------------- loading the kernels


def kernel_dir() -> Path:
    """The folder holding the ``*.cu`` sources (see the module docstring for the search order)."""
    env = os.environ.get("GRIDFLOW_KERNEL_DIR")
    if env:
        return Path(env)
    try:  # installed: kernels/ is shipped as the data-only package gridflow.kernels (wheel or editable install)
        spec = importlib.util.find_spec("gridflow.kernels")
    except (ImportError, ValueError):
        spec = None
    for loc in (spec.submodule_search_locations or []) if spec is not None else []:
        if any(Path(loc).glob("*.cu")):
            return Path(loc)
    return Path(__file__).resolve().parents[2] / "kernels"


_sources: dict[str, Path] = {}
_modules: dict[tuple[int, Path], object] = {}
_kernels: dict[tuple[int, str], object] = {}


def _kernel_file(name: str) -> Path:
    if not _sources:
        d = kernel_dir()
        for path in sorted(d.glob("*.cu")):
            for k in _KERNEL_RE.findall(path.read_text()):
                _sources[k] = path
        if not _sources:
            raise GridflowError(f"no CUDA kernels found in {d} (set GRIDFLOW_KERNEL_DIR to gridflow's kernels/ folder)")
    try:
        return _sources[name]
    except KeyError:
        raise GridflowError(f"CUDA kernel {name} is in none of {sorted({str(p) for p in _sources.values()})}") from None


def get_kernel(name: str):
    """The ``cupy.RawKernel`` ``name`` on the current device (its file compiled on first use)."""
    dev = cp.cuda.runtime.getDevice()
    kern = _kernels.get((dev, name))
    if kern is None:
        path = _kernel_file(name)
        mod = _modules.get((dev, path))
        if mod is None:
            mod = _modules[(dev, path)] = cp.RawModule(code=path.read_text())
        kern = _kernels[(dev, name)] = mod.get_function(name)
    return kern


def _launch(name: str, n_items: int, args, block: int = _BLOCK) -> None:
    if n_items <= 0:
        return
    grid = min((n_items + block - 1) // block, _MAX_GRID)
    get_kernel(name)((grid,), (block,), args)


# ---------------------------------------------------------------- small helpers

_cache: dict[tuple, tuple] = {}


def _cached(obj, tag: str, build):
    """``build(obj)`` once per (live object, tag, device); objects need not be hashable."""
    key = (id(obj), tag, cp.cuda.runtime.getDevice())
    hit = _cache.get(key)
    if hit is not None and hit[0]() is obj:
        return hit[1]
    for k in [k for k, (ref, _) in _cache.items() if ref() is None]:
        del _cache[k]
    value = build(obj)
    _cache[key] = (weakref.ref(obj), value)
    return value


def _dev(a, dtype):
    """``a`` as a C-contiguous device array of ``dtype`` (no copy when it already is one)."""
    return cp.asarray(a, dtype=dtype, order="C")


def _check_inplace(a, dtype, shape, name):
    if not isinstance(a, cp.ndarray) or a.dtype != dtype or a.shape != shape or not a.flags.c_contiguous:
        raise ValueError(f"{name} must be a C-contiguous cupy {np.dtype(dtype).name} array of shape {shape}")


def to_device_csr(Y):
    """A SciPy (or CuPy) CSR matrix as ``cupyx.scipy.sparse.csr_matrix`` with int32 indices and sorted rows."""
    import cupyx.scipy.sparse as csp

    if isinstance(Y, csp.csr_matrix):
        D = Y
    else:
        Y = Y.tocsr()
        Y.sort_indices()
        D = csp.csr_matrix((cp.asarray(Y.data), cp.asarray(Y.indices, dtype=cp.int32),
                            cp.asarray(Y.indptr, dtype=cp.int32)), shape=Y.shape)
    if D.indices.dtype != cp.int32 or D.indptr.dtype != cp.int32:
        D = csp.csr_matrix((D.data, D.indices.astype(cp.int32), D.indptr.astype(cp.int32)), shape=D.shape)
    return D


# ---------------------------------------------------------------- kernel wrappers


def mismatch(Ybus, V, Sbus):
    """``(V conj(Ybus V) - Sbus, Ybus V)`` for V (T, nb) or (nb,); see the module docstring."""
    Y = to_device_csr(Ybus)
    nb = Y.shape[0]
    V = _dev(V, cp.complex128)
    one = V.ndim == 1
    V2 = V.reshape(1, -1) if one else V
    if V2.ndim != 2 or V2.shape[1] != nb:
        raise ValueError(f"V must be (T, {nb}) or ({nb},), not {V.shape}")
    T = V2.shape[0]
    S = _dev(Sbus, cp.complex128)
    if S.shape == (nb,):
        s_stride = 0
    elif S.shape == (T, nb) or (one and S.shape == (1, nb)):
        s_stride = nb
    else:
        raise ValueError(f"Sbus must be ({nb},) or ({T}, {nb}), not {S.shape}")
    data = _dev(Y.data, cp.complex128)
    Ibus = cp.empty_like(V2)
    mis = cp.empty_like(V2)
    _launch("gridflow_mismatch", T * nb, (Y.indptr, Y.indices, data, V2, S, np.int64(s_stride), Ibus, mis,
                                           np.int64(T), np.int32(nb)))
    if one:
        return mis[0], Ibus[0]
    return mis, Ibus


def _device_pattern(pattern):
    """(src int32, kind int8) of a JacobianPattern on the device, copied once per pattern."""
    def build(p):
        return _dev(np.asarray(p.src), cp.int32), _dev(np.asarray(p.kind), cp.int8)

    return _cached(pattern, "jacobian", build)


def jacobian_values(V, Ibus, Ydata, Yrow, Ycol, pattern, xp=None, *, out=None):
    """J's values (T, nnzJ) for voltages V (T, nb): the fused twin of :func:`gridflow.jacobian.jacobian_values`."""
    V = _dev(V, cp.complex128)
    one = V.ndim == 1
    V2 = V.reshape(1, -1) if one else V
    T, nb = V2.shape
    I2 = _dev(Ibus, cp.complex128).reshape(T, nb)
    src, kind = _device_pattern(pattern)
    nnz = int(src.size)
    if out is None:
        out = cp.empty((T, nnz), dtype=cp.float64)
    else:
        _check_inplace(out, cp.float64, (T, nnz), "out")
    _launch("gridflow_jacobian", T * nnz, (V2, I2, _dev(Ydata, cp.complex128), _dev(Yrow, cp.int32),
                                           _dev(Ycol, cp.int32), src, kind, out, np.int64(T), np.int32(nb),
                                           np.int32(nnz)))
    return out[0] if one else out


def unknown_positions(pvpq, pq, nb: int):
    """``(pos_va, pos_vm)``, int32 (nb,): each bus's index in the unknowns ``[Va[pvpq], Vm[pq]]``, -1 if none."""
    pvpq = _dev(pvpq, cp.int64)
    pq = _dev(pq, cp.int64)
    npvpq = int(pvpq.size)
    pos_va = cp.full(nb, -1, dtype=cp.int32)
    pos_va[pvpq] = cp.arange(npvpq, dtype=cp.int32)
    pos_vm = cp.full(nb, -1, dtype=cp.int32)
    pos_vm[pq] = cp.arange(npvpq, npvpq + int(pq.size), dtype=cp.int32)
    return pos_va, pos_vm


def update_voltage(Va, Vm, V, dx, pvpq, pq, *, active=None, step=None, positions=None):
    """The Newton update in place, for active scenarios only; see the module docstring."""
    T, nb = V.shape
    _check_inplace(Va, cp.float64, (T, nb), "Va")
    _check_inplace(Vm, cp.float64, (T, nb), "Vm")
    _check_inplace(V, cp.complex128, (T, nb), "V")
    dx = _dev(dx, cp.float64)
    n = int(pvpq.size if hasattr(pvpq, "size") else len(pvpq)) + int(pq.size if hasattr(pq, "size") else len(pq))
    if dx.shape != (T, n):
        raise ValueError(f"dx must be ({T}, {n}), not {dx.shape}")
    pos_va, pos_vm = positions if positions is not None else unknown_positions(pvpq, pq, nb)
    if active is None:
        act, has_act = cp.zeros(1, dtype=cp.bool_), 0
    else:
        act, has_act = _dev(active, cp.bool_), 1
        if act.shape != (T,):
            raise ValueError(f"active must be ({T},), not {act.shape}")
    if step is None:
        stp, has_stp = cp.zeros(1, dtype=cp.float64), 0
    else:
        stp, has_stp = _dev(step, cp.float64), 1
        if stp.ndim == 0:
            stp = cp.ascontiguousarray(cp.broadcast_to(stp, (T,)))
        if stp.shape != (T,):
            raise ValueError(f"step must be a scalar or ({T},), not {stp.shape}")
    _launch("gridflow_update_voltage", T * nb, (dx, np.int64(n), pos_va, pos_vm, act, np.int32(has_act), stp,
                                                np.int32(has_stp), Va, Vm, V, np.int64(T), np.int32(nb)))
    return Va, Vm, V


def max_abs(F):
    """``max_j |F[t, j]|`` per row t, float64 (T,) (NaN-propagating)."""
    F = _dev(F, cp.float64)
    if F.ndim == 1:
        F = F.reshape(1, -1)
    T, n = F.shape
    out = cp.empty(T, dtype=cp.float64)
    if T:
        get_kernel("gridflow_max_abs")((min(T, 65535),), (_BLOCK,), (F, np.int64(n), out, np.int64(T)))
    return out


# ---------------------------------------------------------------- cuDSS through nvmath-python


def _nvidia_lib_dirs() -> list[Path]:
    """``nvidia/cu13/lib``-style folders of the pip CUDA packages on sys.path."""
    out = []
    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        spec = None
    roots = list(spec.submodule_search_locations) if spec and spec.submodule_search_locations else []
    roots += [os.path.join(p, "nvidia") for p in sys.path if p]
    for root in dict.fromkeys(roots):
        for sub in ("cu13/lib", "cu12/lib", "cudss/lib"):
            d = Path(root) / sub
            if d.is_dir() and d not in out:
                out.append(d)
    return out


def _cudss_threading_lib() -> str | None:
    """cuDSS's OpenMP threading layer (speeds up the CPU part of planning), if installed."""
    env = os.environ.get("CUDSS_THREADING_LIB")
    if env:
        return env
    for d in _nvidia_lib_dirs():
        p = d / "libcudss_mtlayer_gomp.so.0"
        if p.is_file():
            return str(p)
    return None


def cudss_available() -> bool:
    """True when nvmath-python imports and finds the cuDSS library it needs; never raises."""
    try:
        from nvmath.bindings import cudss

        cudss.get_property(0)
        return True
    except Exception:
        return False


class CuDSSBatchSolver:
    """T sparse LUs sharing J's CSR pattern, through cuDSS (nvmath-python >= 1.0, cuDSS 0.8).

    The batch is *explicit* (a list of T ``cupyx.scipy.sparse.csr_matrix``, CuPy
    has no 3-D sparse arrays) and the right-hand side *implicit* (one (T, n, 1)
    array, each sample a column-major (n, 1) matrix). All T matrices share
    ``indptr``/``indices`` and their values are the rows of one device buffer
    ``values`` (T, nnz), so the reordering and symbolic analysis
    (``DirectSolver.plan``) run once, here; :meth:`factorize` writes new values
    into that buffer in place and redoes only the numerical factorization.
    nvmath's ``reset_operands(a=...)`` is not used: for operands already on the
    GPU it drops the plan (the pointers could have changed), which would redo the
    analysis every Newton iteration; in-place updates are what its documentation
    recommends for this case. The right-hand side is copied into a fixed buffer
    likewise.

    Parameters
    ----------
    pattern : JacobianPattern
        With ``fmt == "csr"`` (``jacobian_pattern(Ybus, pv, pq, fmt="csr")``).
    batch_size : int
        T, the number of systems factorized and solved together.
    logger : logging.Logger, optional
        For nvmath's messages (default: this module's logger).

    Attributes
    ----------
    values : cupy float64 (T, nnz)
        The matrices' values; write into it (e.g. ``jacobian_values(..., out=solver.values)``)
        and call ``factorize()`` with no argument to skip a copy.
    """

    def __init__(self, pattern, batch_size: int, *, logger: logging.Logger | None = None):
        if pattern.fmt != "csr":
            raise ValueError("cuDSS takes CSR matrices: build the pattern with jacobian_pattern(..., fmt='csr')")
        T = int(batch_size)
        if T < 1:
            raise ValueError("batch_size must be at least 1")
        try:
            import cupyx.scipy.sparse as csp
            from nvmath.sparse.advanced import DirectSolver, DirectSolverOptions
        except ImportError as e:
            raise GridflowError(f"the GPU linear solver needs nvmath-python 1.0 with cuDSS 0.8 "
                                f"(pip install 'nvmath-python[cu13]==1.0.*'): {e}") from None
        self.n, self.nnz, self.batch_size = int(pattern.n), int(pattern.nnz), T
        n = self.n
        self.indptr = _dev(pattern.indptr, cp.int32)
        self.indices = _dev(pattern.indices, cp.int32)
        self.values = cp.zeros((T, self.nnz), dtype=cp.float64)
        # placeholder values until the first factorize(): the identity (every diagonal of J is stored)
        rows = np.repeat(np.arange(n), np.diff(np.asarray(pattern.indptr)))
        self.values[:, cp.asarray(np.flatnonzero(rows == np.asarray(pattern.indices)))] = 1.0
        self._rhs = cp.zeros((T, 1, n), dtype=cp.float64)
        b = self._rhs.transpose(0, 2, 1)  # (T, n, 1), each sample column-major
        self._mats = [csp.csr_matrix((self.values[t], self.indices, self.indptr), shape=(n, n)) for t in range(T)]
        for t, m in enumerate(self._mats):
            if m.data.data.ptr != self.values[t].data.ptr or m.indices.data.ptr != self.indices.data.ptr:
                raise RuntimeError("cupyx copied a CSR operand; in-place refactorization would not see new values")
        options = DirectSolverOptions(logger=logger or log, multithreading_lib=_cudss_threading_lib())
        self._solver = DirectSolver(self._mats, b, options=options)
        self.plan_info = self._solver.plan()
        self.factorization_info = None
        self._factorized = False

    def factorize(self, data=None):
        """Numerical LU of all T matrices; ``data`` float64 (T, nnz) or None (use ``values`` as written)."""
        if data is not None:
            if not (isinstance(data, cp.ndarray) and data.data.ptr == self.values.data.ptr):
                data = cp.asarray(data, dtype=cp.float64)
                if data.shape != self.values.shape:
                    raise ValueError(f"data must be {self.values.shape}, not {data.shape}")
                self.values[...] = data
        self.factorization_info = self._solver.factorize()
        self._factorized = True
        return self

    def solve(self, b):
        """x (T, n) with ``A_t x_t = b_t`` for every t; b float64 (T, n). Rows of a singular A_t may be inf/NaN."""
        if not self._factorized:
            raise RuntimeError("factorize() before solve()")
        b = cp.asarray(b, dtype=cp.float64)
        if b.shape != (self.batch_size, self.n):
            raise ValueError(f"b must be ({self.batch_size}, {self.n}), not {b.shape}")
        self._rhs[:, 0, :] = b
        x = self._solver.solve()
        return cp.ascontiguousarray(x[:, :, 0])

    def free(self):
        """Release cuDSS's resources (also done when the object is collected)."""
        solver = getattr(self, "_solver", None)
        if solver is not None:
            self._solver = None
            solver.free()

    close = free

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()

    def __del__(self):
        try:
            self.free()
        except Exception:
            pass


# ---------------------------------------------------------------- the batch Newton's operations


class GPUOps:
    """The batch Newton's array operations on one GPU: the twin of :class:`gridflow.batch.CPUOps`.

    One :class:`CuDSSBatchSolver` of batch size T serves every step. A Newton
    step for k <= T scenarios fills the first k systems with their Jacobians and
    the other T - k with the chord Jacobian (known nonsingular) and a zero
    right-hand side. The chord (base-case) Jacobian is factorized into all T
    systems by :meth:`set_chord` and again by :meth:`chord_step` if Newton steps
    have overwritten it since. Device memory: T LU factors of J.

    Parameters
    ----------
    prep : gridflow.solve.Prepared (anything with ``.net``, a :class:`gridflow.network.Network`)
    T : int, the number of scenarios
    """

    xp = cp

    def __init__(self, prep, T: int):
        net = prep.net
        Y = net.Ybus
        self.T = int(T)
        self.Ybus = to_device_csr(Y)
        self.Ydata = self.Ybus.data
        self.Ycol = self.Ybus.indices
        self.Yrow = cp.asarray(np.repeat(np.arange(Y.shape[0], dtype=np.int32), np.diff(Y.indptr)))
        self.pattern = jacobian_pattern(Y, net.pv, net.pq, fmt="csr")
        self.lin = CuDSSBatchSolver(self.pattern, self.T)
        self._j0 = None
        self._chord_ready = False

    def to_device(self, a):
        return cp.asarray(a)

    def to_host(self, a):
        return cp.asnumpy(a)

    def mismatch(self, V, Sbus):
        return mismatch(self.Ybus, V, Sbus)

    def _jac(self, V, Ibus, out=None):
        return jacobian_values(V, Ibus, self.Ydata, self.Yrow, self.Ycol, self.pattern, out=out)

    def _rhs(self, F):
        k = F.shape[0]
        if k > self.T:
            raise ValueError(f"{k} right-hand sides for a batch of {self.T}")
        b = cp.zeros((self.T, self.pattern.n), dtype=cp.float64)
        b[:k] = F
        return b, k

    def newton_step(self, V, Ibus, F):
        """``J(V_t)^-1 F_t`` for every row t (k <= T rows); NaN rows where J is singular."""
        b, k = self._rhs(F)
        vals = self.lin.values
        self._jac(V, Ibus, out=vals[:k])
        if k < self.T:
            vals[k:] = self._j0 if self._j0 is not None else vals[0]
        self._chord_ready = False
        x = self.lin.factorize().solve(b)[:k]
        x[~cp.isfinite(x).all(axis=1)] = cp.nan
        return x

    def set_chord(self, V, Ibus):
        """Factorize the Jacobian at one voltage (nb,) for :meth:`chord_step`."""
        self._j0 = self._jac(V, Ibus)
        self._refactor_chord()

    def _refactor_chord(self):
        self.lin.values[...] = self._j0
        self.lin.factorize()
        self._chord_ready = True

    def chord_step(self, F):
        """Steps with the chord Jacobian for every row of F (k <= T, n)."""
        if self._j0 is None:
            raise RuntimeError("set_chord() before chord_step()")
        if not self._chord_ready:
            self._refactor_chord()
        b, k = self._rhs(F)
        return self.lin.solve(b)[:k]

    def close(self):
        self.lin.free()
