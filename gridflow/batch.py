"""Many power flows of one network: ``solve_batch(case, p_mw, q_mvar, ...)``.

Scenarios differ in bus loads, generator dispatch and outages (``branch_out``,
``gen_out``); they share Ybus's pattern, the Jacobian's and the linear
solver's symbolic analysis, so each Newton step only refills values and
refactorizes (:mod:`gridflow.model`, :mod:`gridflow.newton`). Every scenario
starts from the solved base case (warm start; the base solution is kept by the
model) and stops on its own when it converges; scenarios that do not converge
are reported (``converged``, ``reason``), not raised.

Generators keep their scheduled P (the slack buses take up the difference,
or the participants of a distributed slack) and PV buses their voltage
setpoints, as in a single :func:`gridflow.solve`.
"""

from __future__ import annotations

import logging
import weakref

import numpy as np

from gridflow.case import Case, check_case
from gridflow.errors import GridflowError
from gridflow.model import PowerFlowModel
from gridflow.results import BatchResult, branch_flows, dead_bus_count, loading_percent
from gridflow.slack import participation_factors
from gridflow.solve import check_options, model_for, solve_with_model
from gridflow.start import with_setpoints

__all__ = ["solve_batch", "batch_with_model", "BatchResult"]

log = logging.getLogger(__name__)


def _loads(case: Case, p_mw, q_mvar, scale, T_out: int | None):
    """Per-unit load arrays (T, nb) from MW arrays, per-scenario scale factors, or the case's loads."""
    nb, base = case.nb, case.base_mva
    if scale is not None:
        if p_mw is not None or q_mvar is not None:
            raise GridflowError("give either p_mw/q_mvar or scale, not both")
        s = np.asarray(scale, dtype=float).reshape(-1)
        if not np.isfinite(s).all():
            raise GridflowError("scale has NaN or infinite values")
        return s[:, None] * case.bus.pd[None, :], s[:, None] * case.bus.qd[None, :]
    if p_mw is None:
        if q_mvar is not None:
            raise GridflowError("q_mvar needs p_mw")
        if T_out is None:
            raise GridflowError("give p_mw (scenarios x buses), scale (scenarios,) or outages (branch_out, gen_out)")
        return np.repeat(case.bus.pd[None, :], T_out, axis=0), np.repeat(case.bus.qd[None, :], T_out, axis=0)
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


def _rows(arg, name: str, n: int, T: int | None):
    """Outages per scenario as a list of int arrays: from a list of index lists/arrays, or a bool (T, n) mask."""
    if arg is None:
        return None
    if isinstance(arg, np.ndarray) and arg.dtype == bool:
        if arg.ndim != 2 or arg.shape[1] != n:
            raise GridflowError(f"{name} as a mask must have shape (scenarios, {n}), got {arg.shape}")
        out = [np.flatnonzero(m) for m in arg]
    else:
        try:
            out = [np.asarray(r, dtype=np.int64).reshape(-1) for r in arg]
        except (TypeError, ValueError):
            raise GridflowError(f"{name} must be a list (one per scenario) of row indices, or a bool mask") from None
    for t, r in enumerate(out):
        bad = r[(r < 0) | (r >= n)]
        if len(bad):
            raise GridflowError(f"{name}: scenario {t} names row {int(bad[0])}, the case has rows 0..{n - 1}")
    if T is not None and len(out) != T:
        raise GridflowError(f"{name} has {len(out)} scenarios, the loads have {T}")
    return out


def solve_batch(case: Case, p_mw=None, q_mvar=None, *, scale=None, pg_mw=None, branch_out=None, gen_out=None,
                backend: str = "auto", tol_mva: float = 1e-8, max_iter: int = 20, branch_results: bool = False,
                threads: int | None = None, solver: str = "auto", enforce_q_lims: bool = False,
                distributed_slack: bool = False, participation=None, enforce_p_lims: bool = True,
                q_release: bool = False,
                V0=None) -> BatchResult:
    """Solve one AC power flow per scenario.

    Parameters
    ----------
    case : Case
        Network, generation and the base loads (the base case is solved first, for the start).
    p_mw, q_mvar : array (T, nb), MW / MVAr
        Total constant-power load at every bus in every scenario (replaces the
        case's loads); q_mvar defaults to zero.
    scale : array (T,), optional
        Instead of p_mw/q_mvar: scenario t has the case's loads times scale[t].
    pg_mw : array (T, ng) or (ng,), optional
        Generator P schedules (default: the case's).
    branch_out, gen_out : list of T index arrays, or bool (T, nl) / (T, ng), optional
        Rows of ``case.branch`` / ``case.gen`` out of service in each scenario (N-1 and
        the like); the loads default to the case's when only outages are given.
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
    enforce_q_lims, q_release, distributed_slack, participation, enforce_p_lims
        As in :func:`gridflow.solve`, per scenario.
    V0 : complex (nb,) or (T, nb), optional
        Starts (default: the solved base case).
    """
    check_options(backend=backend, tol_mva=tol_mva, max_iter=max_iter)
    check_case(case)
    use = _choose_backend(backend, case.nb * _count(p_mw, scale, branch_out, gen_out))
    if use == "gpu":
        model = PowerFlowModel(case, backend="gpu", solver=solver)
    else:
        model = model_for(case, solver)
    return batch_with_model(model, p_mw, q_mvar, case=case, scale=scale, pg_mw=pg_mw, branch_out=branch_out,
                            gen_out=gen_out,
                            tol_mva=tol_mva, max_iter=max_iter, branch_results=branch_results, threads=threads,
                            enforce_q_lims=enforce_q_lims, distributed_slack=distributed_slack,
                            participation=participation, enforce_p_lims=enforce_p_lims, q_release=q_release,
                            V0=V0)


def _count(p_mw, scale, branch_out, gen_out) -> int:
    for a in (p_mw, scale, branch_out, gen_out):
        if a is not None:
            try:
                return max(1, len(np.atleast_2d(a)) if a is p_mw else len(a))
            except TypeError:
                return 1
    return 1


def batch_with_model(model: PowerFlowModel, p_mw=None, q_mvar=None, *, case: Case | None = None, scale=None,
                     pg_mw=None, branch_out=None, gen_out=None, tol_mva: float = 1e-8, max_iter: int = 20,
                     branch_results: bool = False, threads: int | None = None, enforce_q_lims: bool = False,
                     distributed_slack: bool = False, participation=None, enforce_p_lims: bool = True,
                     q_release: bool = False, V0=None, q_held=None) -> BatchResult:
    """:func:`solve_batch` on a model; ``case`` (default: the model's) gives the default loads, the
    dispatch and the generator limits, the model the topology. ``q_held``: (mask, q pu) over the generators,
    (ng,) or (T, ng): generators held at a Q limit from the start (e.g. the base solution's
    ``extra["q_held"]``: a warm start's held set saves the rounds that would find it again)."""
    check_options(tol_mva=tol_mva, max_iter=max_iter)
    if case is None:
        case = model.case
    elif case is not model.case:
        model.check_same_topology(case)
    T_out = None
    for a in (branch_out, gen_out):
        if a is not None:
            T_out = len(a)
    Pd, Qd = _loads(case, p_mw, q_mvar, scale, T_out)
    T = Pd.shape[0]
    branch_out = _rows(branch_out, "branch_out", case.nl, T)
    gen_out = _rows(gen_out, "gen_out", case.ng, T)
    if pg_mw is None:
        Pg = np.repeat(case.gen.pg[None, :], T, axis=0)
    else:
        Pg = np.broadcast_to(np.asarray(pg_mw, dtype=float) / case.base_mva, (T, case.ng)).copy()
        if not np.isfinite(Pg).all():
            raise GridflowError("pg_mw has NaN or infinite values")
    Qg = np.repeat(case.gen.qg[None, :], T, axis=0)
    net = model.net
    slack_ref = model.dist_ref if distributed_slack else None
    wg = np.repeat(participation_factors(case, participation)[None, :], T, axis=0) if distributed_slack else None
    roles = model.roles(T, branch_out=branch_out, gen_out=gen_out, slack_ref=slack_ref)
    if V0 is None:
        V0 = base_solution(model, case, tol_mva)
    V0 = np.asarray(V0, dtype=complex)
    if V0.shape not in ((case.nb,), (T, case.nb)) or not np.isfinite(V0).all():
        raise GridflowError(f"V0 must be ({case.nb},) or ({T}, {case.nb}) finite complex voltages")
    controlled = roles.energized & ~roles.q_free
    if q_held is not None and enforce_q_lims:  # held buses keep the start's voltage, not the setpoint
        hm = np.broadcast_to(np.asarray(q_held[0], bool), (T, case.ng)) & roles.gen_on
        controlled = controlled.copy()
        for t in np.flatnonzero(hm.any(axis=1)):
            controlled[t, case.gen.bus[hm[t]]] = False
    V0 = with_setpoints(case, V0, roles.energized, roles.gen_on, controlled)
    r = model.run(V0, pd=Pd, qd=Qd, pg=Pg, qg=Qg, roles=roles, branch_out=branch_out, participation=wg,
                  q_lims=enforce_q_lims, p_lims=enforce_p_lims, q_release=q_release, q_held=q_held,
                  tol=tol_mva / case.base_mva, max_iter=max_iter,
                  threads=threads, case=case)
    base = case.base_mva
    live = r.roles.energized
    V = r.V
    out = dict(vm_pu=np.where(live, np.abs(V), np.nan), va_degree=np.where(live, np.rad2deg(np.angle(V)), np.nan),
               converged=r.converged, iterations=r.iterations, chord_steps=r.chord_steps,
               max_mismatch_mva=r.max_mismatch * base, backend=model.backend.name, bus=case.bus.number,
               reason=r.reason, gen_p_mw=r.pg * base, gen_q_mvar=r.qg * base, slack_mw=r.slack * base,
               dead_buses=dead_bus_count(case, net) + (net.energized & ~live).sum(axis=1),
               q_limited=r.q_limited if enforce_q_lims else None)
    if branch_results:
        out.update(_branch_batch(case, net, V, branch_out))
    return BatchResult(**out)


def base_solution(model: PowerFlowModel, case: Case, tol_mva: float = 1e-8) -> np.ndarray:
    """The solved ``case``'s voltages (nb,): the start of every batch on it (kept while the case lives)."""
    with model._lock:
        cache = model.__dict__.setdefault("_base_cache", weakref.WeakKeyDictionary())
        V = cache.get(case, {}).get(tol_mva)
    if V is None:
        res = solve_with_model(model, case, tol_mva=tol_mva)
        if not res.converged:
            raise GridflowError(f"the base case does not converge, so the batch has no start: {res.message}")
        V = res.V
        with model._lock:
            cache.setdefault(case, {})[tol_mva] = V
    return V


def _choose_backend(backend: str, size: int) -> str:
    if backend == "cpu":
        return "cpu"
    from gridflow.backends import gpu_available

    if backend == "gpu":
        if not gpu_available():
            raise GridflowError("backend 'gpu' needs CuPy and a CUDA device (pip install 'gridflow[gpu]')")
        return "gpu"
    return "gpu" if gpu_available() and size >= 200_000 else "cpu"


def _branch_batch(case, net, V, branch_out=None):
    base = case.base_mva
    on = np.repeat(net.branch_on[None, :], V.shape[0], axis=0)
    if branch_out is not None:
        for t, b in enumerate(branch_out):
            on[t, b] = False
    Sf, St = branch_flows(case, net.Yf, net.Yt, V)
    Sf = np.where(on, Sf, 0) * base
    St = np.where(on, St, 0) * base
    vm = np.abs(V)
    loading = loading_percent(case, Sf, St, vm_from=vm[..., case.branch.f], vm_to=vm[..., case.branch.t])
    return dict(loading_percent=loading, p_from_mw=Sf.real, q_from_mvar=Sf.imag,
                p_to_mw=St.real, q_to_mvar=St.imag)
