"""The GPU backend: the Newton engine's device operations on CuPy, with one shared factorization.

Imported only when the GPU is used (it imports CuPy; ``import gridflow`` never does).
:class:`GPUBackend` implements :class:`gridflow.backends.base.Backend` and gives the same
answers as :class:`gridflow.backends.cpu.CPUBackend` (the tests hold them to 1e-9 pu).

Work per stage (k scenarios on the device, n = the Jacobian's order)
-------------------------------------------------------------------
* ``ibus`` — kernel ``gridflow_ibus`` (``kernels/power_flow.cu``): ``Ybus_t V_t`` with each
  scenario's outaged branches taken out, one thread per (scenario, bus).
* Jacobian values — kernel ``gridflow_jacobian``: J(V_t) in the pattern's order, with each
  scenario's outages, the distributed-slack column and the pinned rows (identity rows).
* ``chord_factorize`` — the base Jacobian J0 (base topology, nothing pinned) is computed on the
  device, factorized **once** on the CPU by SuperLU (``P_r J0 P_c = L U``; minimum degree on
  J0^T + J0, as :class:`gridflow.linalg.SuperLUSolver`, with a 0.1 diagonal-pivoting threshold),
  and L, U and the permutations are kept on the device.
* ``chord_solve`` — every scenario's chord step from those factors: two sparse triangular
  solves with all k right-hand sides at once (``cupyx.scipy.sparse.linalg.spsolve_triangular``
  with a 2-D ``b``: cuSPARSE SpSM), plus two permutations. Nothing extra to install.
* ``newton_step`` — for the scenarios the chord steps no longer contract, in this order
  (``GPUBackend(newton=...)``):

  1. ``"cudss"``: per-scenario LU factorizations with cuDSS through nvmath-python (optional:
     used when nvmath-python 1.0 imports and finds cuDSS 0.8, the only pair nvmath 1.0 accepts;
     ``pip install 'nvmath-python[cu13]==1.0.*'``);
  2. ``"krylov"``: Newton–Krylov on the device: restarted GMRES for all k scenarios in lockstep,
     right-preconditioned by the J0 factors (an outage or a load change is a small change of J0,
     so few iterations are needed), to a relative residual of ``KRYLOV_RTOL``;
  3. ``"host"``: the scenarios GMRES leaves (or all of them in this mode) are factorized on the
     CPU with the model's thread-local KLU solvers, exactly as the CPU backend does, and their
     steps copied back.

  ``"auto"`` (the default) is cuDSS when available, else Krylov then host. The fallback needs
  nothing beyond CuPy; it was chosen over a per-scenario GPU factorization because one shared
  factorization serves the chord and the Krylov steps alike, and the host path keeps the CPU's
  answers for scenarios far from the base case.

Kernels are compiled by NVRTC through ``cupy.RawModule`` on first use per device (CuPy caches
the binaries on disk). :func:`kernel_dir` finds ``kernels/``: ``$GRIDFLOW_KERNEL_DIR``, else the
package ``gridflow.kernels`` (pyproject maps ``kernels/`` to it), else the source tree's.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import threading
import weakref
from pathlib import Path

import cupy as cp
import cupyx.scipy.sparse as csp
import cupyx.scipy.sparse.linalg as cspla
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from gridflow.backends.base import BatchSpec
from gridflow.errors import GridflowError
from gridflow.linalg import SingularJacobian

__all__ = ["GPUBackend", "GPUBatchOps", "Kernels", "kernel_dir", "cudss_status", "CuDSSBatch"]

log = logging.getLogger(__name__)

NEWTON_MODES = ("auto", "cudss", "krylov", "host")
#: GMRES: Krylov vectors per restart, restarts, relative residual ||F - J d|| / ||F||
KRYLOV_RESTART = 30
KRYLOV_CYCLES = 2
KRYLOV_RTOL = 1e-10
#: the cuDSS version nvmath-python 1.0 accepts (it checks at run time)
CUDSS_VERSION = (0, 8)

_BLOCK = 256
_MAX_GRID = 1 << 20  # grid-stride kernels: more blocks than this buys nothing
_KERNEL_RE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(gridflow_\w+)\s*\(')


# ---------------------------------------------------------------------------------------------- kernels


def kernel_dir() -> Path:
    """The folder holding the ``*.cu`` sources (see the module docstring for the search order)."""
    env = os.environ.get("GRIDFLOW_KERNEL_DIR")
    if env:
        return Path(env)
    try:
        spec = importlib.util.find_spec("gridflow.kernels")
    except (ImportError, ValueError):
        spec = None
    for loc in (spec.submodule_search_locations or []) if spec is not None else []:
        if any(Path(loc).glob("*.cu")):
            return Path(loc)
    return Path(__file__).resolve().parents[2] / "kernels"


class Kernels:
    """The ``gridflow_*`` kernels of ``kernels/*.cu``, each file compiled on first use per device."""

    def __init__(self, directory: Path | None = None):
        self.dir = Path(directory) if directory is not None else kernel_dir()
        self._sources: dict[str, Path] = {}
        for path in sorted(self.dir.glob("*.cu")):
            for name in _KERNEL_RE.findall(path.read_text()):
                self._sources[name] = path
        if not self._sources:
            raise GridflowError(f"no CUDA kernels in {self.dir} (set GRIDFLOW_KERNEL_DIR to gridflow's kernels/)")
        self._modules: dict = {}
        self._kernels: dict = {}
        self._lock = threading.Lock()

    def get(self, name: str):
        """The ``cupy.RawKernel`` ``name`` on the current device."""
        dev = cp.cuda.runtime.getDevice()
        with self._lock:
            kern = self._kernels.get((dev, name))
            if kern is None:
                path = self._sources.get(name)
                if path is None:
                    raise GridflowError(f"CUDA kernel {name} is in no file of {self.dir}")
                mod = self._modules.get((dev, path))
                if mod is None:
                    mod = self._modules[(dev, path)] = cp.RawModule(code=path.read_text())
                kern = self._kernels[(dev, name)] = mod.get_function(name)
        return kern

    def launch(self, name: str, n_items: int, args: tuple) -> None:
        """Run a grid-stride kernel over ``n_items`` elements (nothing when 0)."""
        if n_items <= 0:
            return
        grid = min((n_items + _BLOCK - 1) // _BLOCK, _MAX_GRID)
        self.get(name)((grid,), (_BLOCK,), args)


# ---------------------------------------------------------------------------------------------- cuDSS


def cudss_status() -> tuple[bool, str]:
    """(usable, why): nvmath-python's DirectSolver with the cuDSS version it accepts; never raises."""
    try:
        from nvmath.bindings import cudss
        from nvmath.sparse.advanced import DirectSolver  # noqa: F401
    except Exception as e:  # not installed, or a broken install
        return False, f"nvmath-python is not usable ({type(e).__name__}: {e})"
    try:
        version = (int(cudss.get_property(0)), int(cudss.get_property(1)))
    except Exception as e:
        return False, f"the cuDSS library was not found ({type(e).__name__}: {e})"
    if version != CUDSS_VERSION:
        return False, (f"cuDSS {version[0]}.{version[1]} found; nvmath-python 1.0 needs "
                       f"{CUDSS_VERSION[0]}.{CUDSS_VERSION[1]} (pip install 'nvmath-python[cu13]==1.0.*')")
    return True, f"cuDSS {version[0]}.{version[1]}"


class CuDSSBatch:
    """``capacity`` sparse LUs of one CSR pattern through cuDSS (nvmath-python's ``DirectSolver``).

    The batch is explicit (a list of ``cupyx`` CSR matrices whose values are the rows of one
    device buffer ``values`` (capacity, nnz)), the right-hand side implicit ((capacity, n, 1)).
    Planning (reordering, symbolic analysis) runs once, here; :meth:`solve` writes new values
    and right-hand sides into the buffers in place (nvmath keeps device operands by reference)
    and refactorizes. Rows beyond the k in use hold the identity and a zero right-hand side.
    """

    def __init__(self, indptr, indices, n: int, capacity: int):
        from nvmath.sparse.advanced import DirectSolver, DirectSolverOptions

        self.n, self.capacity = int(n), int(capacity)
        self.indptr = cp.asarray(indptr, dtype=cp.int32)
        self.indices = cp.asarray(indices, dtype=cp.int32)
        nnz = int(self.indices.size)
        rows = np.repeat(np.arange(self.n), np.diff(np.asarray(indptr)))
        self._eye = cp.zeros(nnz)
        self._eye[cp.asarray(np.flatnonzero(rows == np.asarray(indices)))] = 1.0
        self.values = cp.zeros((self.capacity, nnz))
        self.values[...] = self._eye
        self.rhs = cp.zeros((self.capacity, self.n, 1))
        self._mats = [csp.csr_matrix((self.values[t], self.indices, self.indptr), shape=(self.n, self.n))
                      for t in range(self.capacity)]
        for t, m in enumerate(self._mats):
            if m.data.data.ptr != self.values[t].data.ptr:
                raise RuntimeError("cupyx copied a CSR operand: in-place refactorization would not see new values")
        self._solver = DirectSolver(self._mats, self.rhs, options=DirectSolverOptions(logger=log))
        self._solver.plan()

    def solve(self, vals, F):
        """x (k, n) with ``A_t x_t = F_t``; ``vals`` (k, nnz) in CSR order; NaN rows where singular."""
        k = int(F.shape[0])
        self.values[:k] = vals
        self.values[k:] = self._eye
        self.rhs[:k, :, 0] = F
        self.rhs[k:] = 0.0
        self._solver.factorize()
        x = cp.ascontiguousarray(self._solver.solve()[:k, :, 0])
        return cp.where(cp.isfinite(x).all(axis=1)[:, None], x, cp.nan)

    def free(self):
        solver, self._solver = getattr(self, "_solver", None), None
        if solver is not None:
            solver.free()


# ---------------------------------------------------------------------------------------------- the backend


class _Net:
    """A model's Ybus (and, once outages are asked for, its branch terms) on the device."""

    def __init__(self, model):
        Y = model.Ybus
        self.nb = Y.shape[0]
        self.indptr = cp.asarray(Y.indptr, dtype=cp.int32)
        self.indices = cp.asarray(Y.indices, dtype=cp.int32)
        self.data = cp.asarray(Y.data, dtype=cp.complex128)
        self.yrow = cp.asarray(model.Yrow, dtype=cp.int32)
        self.terms = None

    def branch_terms(self, terms):
        if self.terms is None:
            i32 = {k: cp.asarray(getattr(terms, k), dtype=cp.int32) for k in ("f", "t", "pff", "pft", "ptf", "ptt")}
            c = {k: cp.asarray(getattr(terms, k), dtype=cp.complex128) for k in ("Yff", "Yft", "Ytf", "Ytt")}
            self.terms = {**i32, **c}
        return self.terms


class _Pattern:
    """A Jacobian pattern's index arrays on the device (storage order), and what steps derive from them."""

    def __init__(self, pattern):
        self.n, self.nnz = int(pattern.n), int(pattern.nnz)
        self.src = cp.asarray(pattern.src, dtype=cp.int32)
        self.kind = cp.asarray(pattern.kind, dtype=cp.int8)
        self.row = cp.asarray(pattern.row, dtype=cp.int32)
        self.col = cp.asarray(pattern.col, dtype=cp.int32)
        row, col = np.asarray(pattern.row), np.asarray(pattern.col)
        # rows of J as sums over its stored values: (J z)_r = sum_m [row_m = r] vals_m z[col_m]
        S = sp.csr_matrix((np.ones(self.nnz), (row, np.arange(self.nnz))), shape=(self.n, self.nnz))
        self.rowsum = csp.csr_matrix((cp.asarray(S.data), cp.asarray(S.indices, dtype=cp.int32),
                                      cp.asarray(S.indptr, dtype=cp.int32)), shape=S.shape)
        # CSR order of the stored values (cuDSS takes CSR)
        order = np.lexsort((col, row))
        self.csr_order = cp.asarray(order)
        self.csr_indptr = np.zeros(self.n + 1, np.int64)
        np.cumsum(np.bincount(row, minlength=self.n), out=self.csr_indptr[1:])
        self.csr_indices = col[order]


class GPUBackend:
    """CuPy on the current CUDA device (see the module docstring).

    Parameters
    ----------
    newton : {"auto", "cudss", "krylov", "host"}
        How Newton steps are solved. "cudss" raises GridflowError when cuDSS is not usable.
    memory_fraction : float
        Share of the free device memory one step's work arrays may take (larger batches are
        done in chunks of scenarios).

    Attributes
    ----------
    stats : dict
        Counters since the backend was made: ``chord_factorizations``, ``chord_rows`` (scenario
        rows of chord solves), ``newton_rows`` by path (``cudss_rows``, ``krylov_rows`` solved by
        GMRES, ``host_rows``), ``krylov_iterations`` (GMRES iterations, summed over chunks), and
        ``factor_nnz`` (nonzeros of L + U of the last chord factorization).
    """

    name = "gpu"
    xp = cp

    def __init__(self, *, newton: str = "auto", memory_fraction: float = 0.5):
        if newton not in NEWTON_MODES:
            raise GridflowError(f"unknown Newton mode {newton!r}; choose from {', '.join(NEWTON_MODES)}")
        self.newton = newton
        self.memory_fraction = float(memory_fraction)
        self.kernels = Kernels()
        self._lock = threading.Lock()
        self._nets: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._patterns: dict = {}
        self._cudss: tuple[bool, str] | None = None
        self.stats = dict.fromkeys(("chord_factorizations", "chord_rows", "cudss_rows", "krylov_rows",
                                    "krylov_iterations", "host_rows", "factor_nnz"), 0)
        if newton == "cudss" and not self.cudss()[0]:
            raise GridflowError(f"newton='cudss': {self.cudss()[1]}")

    def cudss(self) -> tuple[bool, str]:
        """Whether cuDSS is usable here (found once per backend)."""
        if self._cudss is None:
            self._cudss = cudss_status()
        return self._cudss

    def count(self, **inc) -> None:
        with self._lock:
            for k, v in inc.items():
                self.stats[k] += int(v)

    def network(self, model) -> _Net:
        with self._lock:
            net = self._nets.get(model)
            if net is None:
                net = self._nets[model] = _Net(model)
        return net

    def pattern(self, pattern) -> _Pattern:
        key = id(pattern)
        with self._lock:
            hit = self._patterns.get(key)
            if hit is not None and hit[0]() is pattern:
                return hit[1]
            for k in [k for k, (ref, _) in self._patterns.items() if ref() is None]:
                del self._patterns[k]
        dev = _Pattern(pattern)
        with self._lock:
            self._patterns[key] = (weakref.ref(pattern), dev)
        return dev

    def batch_ops(self, model, pattern, spec: BatchSpec) -> GPUBatchOps:
        return GPUBatchOps(self, model, pattern, spec)


class GPUBatchOps:
    """:class:`gridflow.backends.base.BatchOps` on the GPU (see the module docstring)."""

    xp = cp

    def __init__(self, backend: GPUBackend, model, pattern, spec: BatchSpec):
        self.backend, self.model, self.pattern, self.spec = backend, model, pattern, spec
        self.net = backend.network(model)
        self.pat = backend.pattern(pattern)
        T = spec.T
        out_t = np.asarray(spec.out_t, np.int64)
        order = np.argsort(out_t, kind="stable")
        ptr = np.zeros(T + 1, np.int64)
        np.cumsum(np.bincount(out_t, minlength=T), out=ptr[1:])
        self.out_ptr = cp.asarray(ptr, dtype=cp.int32)
        self.out_br = cp.asarray(np.r_[np.asarray(spec.out_k, np.int64)[order], 0], dtype=cp.int32)
        if spec.has_outages:
            tm = self.net.branch_terms(spec.terms)
        else:
            zi, zc = cp.zeros(1, dtype=cp.int32), cp.zeros(1, dtype=cp.complex128)
            tm = dict(f=zi, t=zi, pff=zi, pft=zi, ptf=zi, ptt=zi, Yff=zc, Yft=zc, Ytf=zc, Ytt=zc)
        self.tm = tm
        self.free = None if spec.free is None else cp.asarray(np.ascontiguousarray(spec.free, dtype=bool))
        self._no_out = cp.zeros(2, dtype=cp.int32)
        self._dummy_f = cp.zeros(1, dtype=cp.float64)
        self._dummy_b = cp.zeros(1, dtype=cp.bool_)
        self._chord = None
        self._cudss = None

    def to_device(self, a):
        return cp.asarray(a)

    def to_host(self, a):
        return cp.asnumpy(a)

    # ------------------------------------------------------------------ kernels

    def ibus(self, idx, V, *, base: bool = False):
        """``Ybus_t V_t`` per row (``base``: no outages)."""
        V = cp.ascontiguousarray(V, dtype=cp.complex128)
        k, nb = V.shape
        sc = cp.ascontiguousarray(cp.asarray(idx), dtype=cp.int32)
        Ibus = cp.empty((k, nb), dtype=cp.complex128)
        n, tm = self.net, self.tm
        out_ptr = self._no_out if base else self.out_ptr
        self.backend.kernels.launch("gridflow_ibus", k * nb, (
            n.indptr, n.indices, n.data, V, sc, out_ptr, self.out_br, tm["f"], tm["t"], tm["Yff"], tm["Yft"],
            tm["Ytf"], tm["Ytt"], Ibus, np.int64(k), np.int32(nb)))
        return Ibus

    def jacobian(self, sc, V, Ibus, w, *, base: bool = False):
        """J's values (k, nnzJ) for the rows' scenarios ``sc`` (k,); ``base``: no outages, nothing pinned."""
        V = cp.ascontiguousarray(V, dtype=cp.complex128)
        Ibus = cp.ascontiguousarray(Ibus, dtype=cp.complex128)
        k, nb = V.shape
        p, n, tm = self.pat, self.net, self.tm
        sc = cp.ascontiguousarray(cp.asarray(sc), dtype=cp.int32)
        out_ptr = self._no_out if base else self.out_ptr
        free = self._dummy_b if (base or self.free is None) else self.free
        wv = self._dummy_f if w is None else cp.ascontiguousarray(w, dtype=cp.float64)
        J = cp.empty((k, p.nnz), dtype=cp.float64)
        self.backend.kernels.launch("gridflow_jacobian", k * p.nnz, (
            V, Ibus, n.data, n.yrow, n.indices, p.src, p.kind, p.row, p.col, sc, out_ptr, self.out_br, tm["pff"],
            tm["pft"], tm["ptf"], tm["ptt"], tm["Yff"], tm["Yft"], tm["Ytf"], tm["Ytt"], wv, np.int32(w is not None),
            free, np.int32(free is self.free), J, np.int64(k), np.int32(nb), np.int32(p.n), np.int32(p.nnz)))
        return J

    # ------------------------------------------------------------------ chord steps

    def chord_factorize(self, V, Ibus, w):
        self._chord = None
        sc0 = cp.zeros(1, dtype=cp.int32)
        Ib = self.ibus(sc0, V[None, :], base=True)  # J0 is the base topology's (as on the CPU)
        vals = self.jacobian(sc0, V[None, :], Ib, None if w is None else w[None, :], base=True)
        data = cp.asnumpy(vals[0])
        if not np.isfinite(data).all():
            raise SingularJacobian("the chord Jacobian is not finite")
        pat = self.pattern
        if self.spec.free is not None:  # the first scenario's rows pinned, as the CPU backend's J0
            free0 = np.asarray(self.spec.free[0], bool)
            data[~free0[pat.row]] = 0.0
            data[pat.diag[~free0]] = 1.0
        cls = sp.csc_matrix if pat.fmt == "csc" else sp.csr_matrix
        A = cls((data, pat.indices, pat.indptr), shape=(pat.n, pat.n)).tocsc()
        try:
            lu = spla.splu(A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.1, options={"SymmetricMode": True})
        except RuntimeError as e:
            raise SingularJacobian(f"the chord Jacobian is singular ({e})") from None
        L, U = _device_csr(lu.L), _device_csr(lu.U)
        self._chord = (L, U, cp.asarray(np.argsort(lu.perm_r)), cp.asarray(lu.perm_c))
        self.backend.count(chord_factorizations=1)
        with self.backend._lock:
            self.backend.stats["factor_nnz"] = int(lu.L.nnz + lu.U.nnz)

    def chord_solve(self, idx, F):
        """Chord steps of the scenarios ``idx``: ``J0^-1 F_t`` for every row (the plain chord; outage scenarios'
        low-rank compensation, :mod:`gridflow.compensation`, is CPU-only so far)."""
        return self._j0_solve(F)

    def _j0_solve(self, F):
        """``J0^-1 F_t`` for every row: ``x = P_c U^-1 L^-1 P_r F`` with all rows as right-hand sides at once."""
        L, U, ipr, pc = self._chord
        Y = cp.ascontiguousarray(F, dtype=cp.float64)[:, ipr]  # (k, n), C order: Y.T is (n, k), F order
        Z = cspla.spsolve_triangular(L, Y.T, lower=True, unit_diagonal=True)
        Z = cspla.spsolve_triangular(U, Z, lower=False)
        self.backend.count(chord_rows=F.shape[0])
        return cp.ascontiguousarray(Z.T[:, pc])

    # ------------------------------------------------------------------ Newton steps

    def newton_step(self, idx, V, Ibus, F, w):
        k, n = F.shape
        d = cp.empty((k, n), dtype=cp.float64)
        per_row = 8 * (3 * self.pat.nnz + (KRYLOV_RESTART + 8) * n)
        for a, b in self._chunks(k, per_row):
            sc = cp.asarray(idx)[a:b]
            vals = self.jacobian(sc, V[a:b], Ibus[a:b], None if w is None else w[a:b])
            d[a:b] = self._solve(vals, cp.ascontiguousarray(F[a:b], dtype=cp.float64))
        return d

    def _chunks(self, k: int, per_row: int):
        free, _total = cp.cuda.runtime.memGetInfo()
        free += cp.get_default_memory_pool().free_bytes()  # held by CuPy's pool, reusable
        rows = max(1, int(self.backend.memory_fraction * free // max(per_row, 1)))
        for a in range(0, k, rows):
            yield a, min(k, a + rows)

    def _solve(self, vals, F):
        mode = self.backend.newton
        k = int(F.shape[0])
        if mode in ("auto", "cudss") and self.backend.cudss()[0]:
            try:
                x = self._cudss_solve(vals, F)
                self.backend.count(cudss_rows=k)
                return x
            except Exception as e:  # a cuDSS failure is not the engine's: fall back
                if mode == "cudss":
                    raise
                log.warning("cuDSS failed (%s: %s); Newton steps fall back to GMRES and the CPU", type(e).__name__, e)
        x = cp.full(F.shape, cp.nan)
        todo = cp.ones(k, dtype=cp.bool_)
        if mode in ("auto", "krylov") and self._chord is not None:
            xk, ok = self.krylov(vals, F)
            x = cp.where(ok[:, None], xk, x)
            todo = ~ok
            self.backend.count(krylov_rows=int(ok.sum()))
        rows = cp.flatnonzero(todo)
        if int(rows.size):
            x[rows] = self._host_solve(vals[rows], F[rows])
            self.backend.count(host_rows=int(rows.size))
        return x

    def _cudss_solve(self, vals, F):
        k = int(F.shape[0])
        if self._cudss is None or self._cudss.capacity < k:
            if self._cudss is not None:
                self._cudss.free()
            p = self.pat
            self._cudss = CuDSSBatch(p.csr_indptr, p.csr_indices, p.n, k)
        return self._cudss.solve(vals[:, self.pat.csr_order], F)

    def _host_solve(self, vals, F):
        """Per-scenario KLU factorizations on the CPU (the model's thread-local solvers), as the CPU backend."""
        vals_h, F_h = cp.asnumpy(vals), cp.asnumpy(F)
        d = np.empty_like(F_h)

        def run(rows):
            lin = self.model.local_solver(self.pattern)
            for j in rows:
                try:
                    d[j] = lin.factorize(vals_h[j]).solve(F_h[j])
                except SingularJacobian:
                    d[j] = np.nan

        self.model.run_threaded(run, len(F_h), self.model.threads_for(len(F_h), self.spec.threads))
        return cp.asarray(d)

    def matvec(self, vals, z):
        """``J_t z_t`` for every row: vals (k, nnzJ) in storage order, z (k, n)."""
        prod = vals * z[:, self.pat.col]
        return cp.ascontiguousarray((self.pat.rowsum @ prod.T).T)

    def krylov(self, vals, F):
        """GMRES(``KRYLOV_RESTART``) for ``J_t d_t = F_t``, all rows in lockstep, right-preconditioned by J0.

        Returns (d (k, n), ok (k,)): ok where ``||F_t - J_t d_t|| <= KRYLOV_RTOL ||F_t||`` (checked on
        the true residual). Orthogonalization: classical Gram–Schmidt done twice; the least-squares
        problems by Givens rotations, per row (Saad, *Iterative Methods for Sparse Linear Systems*,
        2nd ed., alg. 6.9 and 9.5).
        """
        k, n = F.shape
        m = max(1, min(KRYLOV_RESTART, n))
        bnorm = cp.sqrt((F * F).sum(axis=1))
        x = cp.zeros((k, n))
        r = F.copy()
        iters = 0
        for _cycle in range(KRYLOV_CYCLES):
            beta = cp.sqrt((r * r).sum(axis=1))
            Q = cp.zeros((k, m + 1, n))
            Q[:, 0] = r / cp.where(beta > 0, beta, 1.0)[:, None]
            H = cp.zeros((k, m + 1, m))
            cs, sn = cp.zeros((k, m)), cp.zeros((k, m))
            g = cp.zeros((k, m + 1))
            g[:, 0] = beta
            steps = 0
            for j in range(m):
                wv = self.matvec(vals, self._j0_solve(Q[:, j]))
                for _ in range(2):
                    h = (Q[:, :j + 1] @ wv[:, :, None])[:, :, 0]
                    wv = wv - (h[:, None, :] @ Q[:, :j + 1])[:, 0]
                    H[:, :j + 1, j] += h
                hn = cp.sqrt((wv * wv).sum(axis=1))
                H[:, j + 1, j] = hn
                Q[:, j + 1] = wv / cp.where(hn > 0, hn, 1.0)[:, None]
                for i in range(j):
                    a, b = H[:, i, j].copy(), H[:, i + 1, j].copy()
                    H[:, i, j] = cs[:, i] * a + sn[:, i] * b
                    H[:, i + 1, j] = -sn[:, i] * a + cs[:, i] * b
                a, b = H[:, j, j], H[:, j + 1, j]
                rho = cp.sqrt(a * a + b * b)
                safe = cp.where(rho > 0, rho, 1.0)
                c, s = cp.where(rho > 0, a / safe, 1.0), cp.where(rho > 0, b / safe, 0.0)
                cs[:, j], sn[:, j] = c, s
                H[:, j, j], H[:, j + 1, j] = rho, 0.0
                g[:, j + 1] = -s * g[:, j]
                g[:, j] = c * g[:, j]
                steps = j + 1
                iters += 1
                if bool((cp.abs(g[:, j + 1]) <= KRYLOV_RTOL * bnorm).all()):  # sync
                    break
            y = cp.zeros((k, steps))
            for i in reversed(range(steps)):
                acc = g[:, i] - (H[:, i, i + 1:steps] * y[:, i + 1:steps]).sum(axis=1)
                hii = H[:, i, i]
                y[:, i] = cp.where(hii != 0, acc / cp.where(hii != 0, hii, 1.0), 0.0)
            x = x + self._j0_solve((y[:, None, :] @ Q[:, :steps])[:, 0])
            r = F - self.matvec(vals, x)
            ok = (cp.sqrt((r * r).sum(axis=1)) <= KRYLOV_RTOL * bnorm) & cp.isfinite(x).all(axis=1)
            if bool(ok.all()):  # sync
                break
        self.backend.count(krylov_iterations=iters)
        return x, ok

    def close(self):
        self._chord = None
        if self._cudss is not None:
            self._cudss.free()
            self._cudss = None


def _device_csr(M):
    """A SciPy sparse matrix as a canonical ``cupyx`` CSR matrix (int32 indices)."""
    M = M.tocsr()
    M.sum_duplicates()
    M.sort_indices()
    return csp.csr_matrix((cp.asarray(M.data, dtype=cp.float64), cp.asarray(M.indices, dtype=cp.int32),
                           cp.asarray(M.indptr, dtype=cp.int32)), shape=M.shape)
