"""Many power flows of one network: ``solve_batch(case, p_mw, q_mvar)``.

Scenarios differ in bus loads only, so every scenario shares Ybus, the bus
types and the Jacobian's sparsity pattern: the pattern and the sparse LU's
ordering/symbolic analysis are made once; each Newton iteration only refills
values and refactorizes. Every scenario starts from the solved base case
(warm start) and stops on its own when it converges (it is masked out of
later iterations); scenarios that do not converge are reported, not raised.

Step control, per scenario:

1. chord steps (the "dishonest" Newton of circuit simulators): ``dx = J0^-1 F``
   with ``J0`` the Jacobian at the base solution, factorized once and shared by
   all scenarios, so a step costs one triangular solve instead of a
   refactorization. A scenario keeps taking them while each shrinks
   ``||F||_2`` at least ``1/CHORD_RATE``-fold;
2. full Newton steps with backtracking (as :mod:`gridflow.newton`) for the
   rest. Convergence is always judged on the true mismatch, so the answer is
   the same as a full-Newton solve to within the tolerance.

Generators keep their scheduled P (the slack buses take up the difference)
and PV buses their voltage setpoints, as in a single :func:`gridflow.solve`.

The algorithm is written once over the array module ``xp``; the CPU backend
runs the scenarios' factorizations on a thread pool (KLU releases the GIL),
the GPU backend (:mod:`gridflow.backends.gpu`) does the whole batch at once
with CUDA kernels and cuDSS.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from gridflow.case import Case, check_case
from gridflow.errors import GridflowError
from gridflow.jacobian import jacobian_values
from gridflow.linalg import SingularJacobian, make_solver
from gridflow.network import make_sbus
from gridflow.results import branch_flows, loading_percent
from gridflow.solve import prepare, solve

log = logging.getLogger(__name__)

#: chord steps (base-case Jacobian, no refactorization) go on while each shrinks ||F||_2 this much;
#: a chord step costs about a tenth of a Newton step (no refactorization), so it pays while it
#: contracts faster than about 0.3 per step
CHORD_RATE = 0.3
MAX_CHORD_STEPS = 30
#: halvings of a Newton step tried when the full step grows ||F||_2^2 over STEP_GROWTH times
#: (a guard against divergence: from a warm start, a full step that raises ||F||_2 a little
#: still converges faster than a halved one)
LINE_SEARCH_STEPS = 9
STEP_GROWTH = 100.0


@dataclass(frozen=True)
class BatchResult:
    """Results of a batch, one row per scenario (T scenarios, nb buses, nl branches).

    Attributes
    ----------
    vm_pu, va_degree : float64 (T, nb)
        Bus voltage magnitude (pu) and angle (degrees); NaN at de-energized buses.
    converged : bool (T,)
    iterations : int (T,)
        Newton iterations (each a Jacobian refactorization) each scenario took.
    chord_steps : int (T,)
        Cheap steps with the base case's Jacobian taken before them.
    max_mismatch_mva : float64 (T,)
        Largest |dP| or |dQ| left, MW / MVAr.
    backend : str
    loading_percent, p_from_mw, q_from_mvar, p_to_mw, q_to_mvar : float64 (T, nl) or None
        Branch results, when asked for (``branch_results=True``).
    """

    vm_pu: np.ndarray
    va_degree: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    chord_steps: np.ndarray
    max_mismatch_mva: np.ndarray
    backend: str
    bus: np.ndarray = field(repr=False, default=None)
    loading_percent: np.ndarray | None = None
    p_from_mw: np.ndarray | None = None
    q_from_mvar: np.ndarray | None = None
    p_to_mw: np.ndarray | None = None
    q_to_mvar: np.ndarray | None = None

    @property
    def n_failed(self) -> int:
        return int((~self.converged).sum())

    def failed(self) -> np.ndarray:
        """Indices of the scenarios that did not converge."""
        return np.flatnonzero(~self.converged)


def _loads(case: Case, p_mw, q_mvar, scale):
    """Per-unit load arrays (T, nb) from MW arrays or per-scenario scale factors."""
    nb, base = case.nb, case.base_mva
    if scale is not None:
        if p_mw is not None or q_mvar is not None:
            raise GridflowError("give either p_mw/q_mvar or scale, not both")
        s = np.asarray(scale, dtype=float).reshape(-1)
        if not np.isfinite(s).all():
            raise GridflowError("scale has NaN or infinite values")
        return s[:, None] * case.bus.pd[None, :], s[:, None] * case.bus.qd[None, :]
    if p_mw is None:
        raise GridflowError("give p_mw (scenarios x buses) or scale (scenarios,)")
    p = np.atleast_2d(np.asarray(p_mw, dtype=float))
    q = np.zeros_like(p) if q_mvar is None else np.atleast_2d(np.asarray(q_mvar, dtype=float))
    for name, a in (("p_mw", p), ("q_mvar", q)):
        if a.ndim != 2 or a.shape[1] != nb:
            raise GridflowError(f"{name} must have shape (scenarios, {nb}), got {a.shape}")
        if not np.isfinite(a).all():
            t, i = np.argwhere(~np.isfinite(a))[0]
            raise GridflowError(f"{name} is not finite in scenario {t} at bus {int(case.bus.number[i])}")
    if p.shape != q.shape:
        raise GridflowError(f"p_mw {p.shape} and q_mvar {q.shape} differ in shape")
    return p / base, q / base


def solve_batch(case: Case, p_mw=None, q_mvar=None, *, scale=None, backend: str = "auto", tol_mva: float = 1e-8,
                max_iter: int = 20, branch_results: bool = False, threads: int | None = None,
                solver: str = "auto") -> BatchResult:
    """Solve one AC power flow per scenario of bus loads.

    Parameters
    ----------
    case : Case
        Network, generation and the base loads (the base case is solved first).
    p_mw, q_mvar : array (T, nb), MW / MVAr
        Total constant-power load at every bus in every scenario (replaces the
        case's loads); q_mvar defaults to zero.
    scale : array (T,), optional
        Instead of p_mw/q_mvar: scenario t has the case's loads times scale[t].
    backend : {"auto", "cpu", "gpu"}
        "auto" takes the GPU when CuPy sees a device and the batch is large
        (T * nb >= 200,000), else the CPU. The one used is in ``result.backend``.
    tol_mva : float
        Converged when every |dP|, |dQ| is below this, MW / MVAr.
    max_iter : int
        Newton iterations per scenario at most.
    branch_results : bool
        Also return branch flows and loading (T, nl), MW / MVAr / %.
    threads : int, optional
        CPU threads for the factorizations (default: the CPUs this process may use).
    """
    check_case(case)
    Pd, Qd = _loads(case, p_mw, q_mvar, scale)
    T = Pd.shape[0]
    use = _choose_backend(backend, T * case.nb)
    base_res = solve(case, tol_mva=tol_mva)
    if not base_res.converged:
        raise GridflowError(f"the base case does not converge, so the batch has no start: {base_res.message}")
    prep = prepare(case, solver)
    net = prep.net
    Sg = make_sbus(case, net) + (case.bus.pd + 1j * case.bus.qd) * net.energized  # generation only
    Sbus = np.where(net.energized, Sg[None, :] - (Pd + 1j * Qd), 0.0)
    V0 = base_res.V
    tol = tol_mva / case.base_mva
    if use == "gpu":
        from gridflow.backends.gpu import GPUOps

        ops = GPUOps(prep, T)
    else:
        ops = CPUOps(prep, T, threads=threads, solver=solver)
    V, conv, iters, chords, norm = newton_batch(ops, Sbus, V0, net.pv, net.pq, tol=tol, max_iter=max_iter)
    live = net.energized[None, :]
    out = dict(vm_pu=np.where(live, np.abs(V), np.nan), va_degree=np.where(live, np.rad2deg(np.angle(V)), np.nan),
               converged=conv, iterations=iters, chord_steps=chords, max_mismatch_mva=norm * case.base_mva, backend=use,
               bus=case.bus.number)
    if branch_results:
        out.update(_branch_batch(case, net, V))
    return BatchResult(**out)


def _choose_backend(backend: str, size: int) -> str:
    if backend not in ("auto", "cpu", "gpu"):
        raise GridflowError(f"unknown backend {backend!r}; choose from auto, cpu, gpu")
    if backend == "cpu":
        return "cpu"
    from gridflow.backends import gpu_available

    if backend == "gpu":
        if not gpu_available():
            raise GridflowError("backend 'gpu' needs CuPy and a CUDA device (pip install 'gridflow[gpu]')")
        return "gpu"
    return "gpu" if gpu_available() and size >= 200_000 else "cpu"


def _branch_batch(case, net, V):
    base = case.base_mva
    Sf = np.empty((V.shape[0], case.nl), complex)
    St = np.empty_like(Sf)
    for t in range(V.shape[0]):
        Sf[t], St[t] = branch_flows(case, net.Yf, net.Yt, V[t])
    Sf = np.where(net.branch_on, Sf, 0) * base
    St = np.where(net.branch_on, St, 0) * base
    vm = np.abs(V)
    loading = loading_percent(case, Sf, St, vm_from=vm[:, case.branch.f], vm_to=vm[:, case.branch.t])
    return dict(loading_percent=loading, p_from_mw=Sf.real, q_from_mvar=Sf.imag,
                p_to_mw=St.real, q_to_mvar=St.imag)


def mismatch_batch(Ybus, V, Sbus):
    """``V conj(Ybus V) - Sbus`` and ``Ybus V`` for V (T, nb), complex, pu."""
    Ibus = (Ybus @ V.T).T
    return V * np.conj(Ibus) - Sbus, Ibus


class CPUOps:
    """The batch Newton's array operations on the CPU (NumPy, SciPy, KLU on a thread pool).

    The GPU twin is :class:`gridflow.backends.gpu.GPUOps`; both have ``xp``,
    ``mismatch(V, Sbus) -> (mis, Ibus)``, ``newton_step(V, Ibus, F) -> dx``
    (rows of NaN where a Jacobian is singular), ``set_chord(V, Ibus)`` and
    ``chord_step(F) -> dx``, ``to_device(a)``, ``to_host(a)``.
    """

    xp = np

    def __init__(self, prep, T, *, threads=None, solver="auto"):
        self.prep = prep
        self.Ybus = prep.net.Ybus
        self.pattern, _ = prep.linear(prep.net.pv, prep.net.pq)
        self.n_threads = max(1, min(threads or len(os.sched_getaffinity(0)), T))
        self.solver_name = solver
        self.solvers = [make_solver(solver, self.pattern) for _ in range(self.n_threads)]
        self.pool = ThreadPoolExecutor(max_workers=self.n_threads) if self.n_threads > 1 else None

    def to_device(self, a):
        return np.asarray(a)

    def to_host(self, a):
        return np.asarray(a)

    def mismatch(self, V, Sbus):
        return mismatch_batch(self.Ybus, V, Sbus)

    def _map(self, fn, n):
        """Run fn(solver, rows) over the thread pool, one chunk of rows per thread
        (each thread's KLU keeps its refactorization warm)."""
        chunks = np.array_split(np.arange(n), self.n_threads)
        if self.pool is None:
            fn(self.solvers[0], chunks[0])
        else:
            list(self.pool.map(fn, self.solvers, chunks))

    def newton_step(self, V, Ibus, F):
        """Newton steps ``J(V_t)^-1 F_t`` for every row t; NaN rows where J is singular."""
        Y = self.Ybus
        dx = np.empty_like(F)

        def run(lin, rows):
            for j in rows:
                data = jacobian_values(V[j], Ibus[j], Y.data, self.prep.Yrow, Y.indices, self.pattern,
                                       diag=self.prep.diag)
                try:
                    dx[j] = lin.factorize(data).solve(F[j])
                except SingularJacobian:
                    dx[j] = np.nan

        self._map(run, len(F))
        return dx

    def set_chord(self, V, Ibus):
        """Factorize the Jacobian at one voltage (nb,), for :meth:`chord_step`."""
        Y = self.Ybus
        data = jacobian_values(V, Ibus, Y.data, self.prep.Yrow, Y.indices, self.pattern, diag=self.prep.diag)
        self.chord = make_solver(self.solver_name, self.pattern).factorize(data)

    def chord_step(self, F):
        """Steps with the chord Jacobian for every row of F (T, n): one multi-RHS solve."""
        return self.chord.solve(np.asfortranarray(F.T)).T

    def close(self):
        if self.pool is not None:
            self.pool.shutdown()


def newton_batch(ops, Sbus, V0, pv, pq, *, tol, max_iter):
    """Newton–Raphson for T scenarios at once (one algorithm for every backend).

    Parameters
    ----------
    ops : CPUOps or GPUOps
    Sbus : complex128 (T, nb), pu
    V0 : complex128 (nb,), pu, the start of every scenario
    pv, pq : int arrays (bus types shared by all scenarios)
    tol : float, pu; max_iter : int

    Returns
    -------
    V (T, nb) complex, converged (T,) bool, iterations (T,) int (Newton steps), chord steps (T,) int,
    norm (T,) float (pu) — on the host.
    """
    xp = ops.xp
    pv, pq = np.asarray(pv), np.asarray(pq)
    pvpq_h = np.r_[pv, pq]
    npvpq = len(pvpq_h)
    pvpq, pq_d = ops.to_device(pvpq_h), ops.to_device(pq)
    Sbus = ops.to_device(Sbus)
    T = Sbus.shape[0]
    V = xp.repeat(ops.to_device(V0)[None, :], T, axis=0)
    Va, Vm = xp.angle(V), xp.abs(V)
    iters = xp.zeros(T, dtype=xp.int64)

    def residual(V, Sbus):
        mis, Ibus = ops.mismatch(V, Sbus)
        F = xp.concatenate([mis[:, pvpq].real, mis[:, pq_d].imag], axis=1)
        return F, Ibus, xp.abs(F).max(axis=1, initial=0.0)

    F, Ibus, norm = residual(V, Sbus)
    chords = xp.zeros(T, dtype=xp.int64)
    try:
        # chord phase: steps with the Jacobian of the start, factorized once for all scenarios,
        # while every step shrinks ||F||_inf at least CHORD_RATE-fold; scenarios that slow down leave
        ops.set_chord(V[0], Ibus[0])
        chordable = norm >= tol
        merit = (F ** 2).sum(axis=1)
        for _ in range(MAX_CHORD_STEPS):
            idx = xp.flatnonzero(chordable)
            if int(idx.size) == 0:  # sync
                break
            dx = ops.chord_step(F[idx])
            Va_t, Vm_t = Va[idx].copy(), Vm[idx].copy()
            Va_t[:, pvpq] -= dx[:, :npvpq]
            Vm_t[:, pq_d] -= dx[:, npvpq:]
            F_t, I_t, n_t = residual(Vm_t * xp.exp(1j * Va_t), Sbus[idx])
            m_t = (F_t ** 2).sum(axis=1)
            better = xp.isfinite(n_t) & (m_t < merit[idx])
            keep = idx[better]
            Va[keep], Vm[keep] = Va_t[better], Vm_t[better]
            V[keep] = Vm[keep] * xp.exp(1j * Va[keep])
            F[keep], Ibus[keep] = F_t[better], I_t[better]
            fast = better & (m_t < CHORD_RATE ** 2 * merit[idx])
            norm[keep], merit[keep] = n_t[better], m_t[better]
            chords[keep] += 1
            chordable[idx] = fast & (n_t >= tol)
        for _ in range(max_iter):
            active = norm >= tol
            idx = xp.flatnonzero(active & xp.isfinite(norm))
            if int(idx.size) == 0:  # sync: once per iteration
                break
            dx = ops.newton_step(V[idx], Ibus[idx], F[idx])
            bad = ~xp.isfinite(dx).all(axis=1)
            dx[bad] = 0.0
            merit = (F[idx] ** 2).sum(axis=1)
            Va_i, Vm_i = Va[idx], Vm[idx]
            alpha = xp.ones(len(idx))
            todo = xp.arange(len(idx))
            Fn, In, nn = F[idx].copy(), Ibus[idx].copy(), norm[idx].copy()
            Van, Vmn = Va_i.copy(), Vm_i.copy()
            for _trial in range(LINE_SEARCH_STEPS):  # backtracking, per scenario
                a = alpha[todo][:, None]
                Va_t, Vm_t = Va_i[todo].copy(), Vm_i[todo].copy()
                Va_t[:, pvpq] -= a * dx[todo, :npvpq]
                Vm_t[:, pq_d] -= a * dx[todo, npvpq:]
                F_t, I_t, n_t = residual(Vm_t * xp.exp(1j * Va_t), Sbus[idx[todo]])
                Fn[todo], In[todo], nn[todo], Van[todo], Vmn[todo] = F_t, I_t, n_t, Va_t, Vm_t
                worse = ~((F_t ** 2).sum(axis=1) < STEP_GROWTH * merit[todo])
                if not bool(worse.any()):  # sync
                    break
                todo = todo[worse]
                alpha[todo] *= 0.5
            Va[idx], Vm[idx] = Van, Vmn
            V[idx] = Vmn * xp.exp(1j * Van)
            iters[idx] += 1
            F[idx], Ibus[idx] = Fn, In
            norm[idx] = xp.where(bad | ~xp.isfinite(nn), xp.inf, nn)
    finally:
        if hasattr(ops, "close"):
            ops.close()
    return ops.to_host(V), ops.to_host(norm < tol), ops.to_host(iters), ops.to_host(chords), ops.to_host(norm)
