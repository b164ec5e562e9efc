"""The study's one seam to the AC power-flow engine: solve an operating point, or many.

Every AC solve of the study goes through :func:`solve_point` or
:func:`solve_points`; nothing else in ``gridflow.study`` calls the engine. What a
study needs from it is stated here once:

* **Demand**: the case's bus loads (``pd``, ``qd``) are the study's demand
  (datacenters added, shed taken off); the caller builds that case.
* **Who responds**: ``responders`` (bool (ng,)) are the generators that pick up
  the change of demand and losses, in proportion to their headroom
  (``Pmax - Pg`` when demand rises, ``Pg - Pmin`` when it falls: participation =
  headroom within the footprint). Every other generator holds the ``pg`` the
  caller gave it, so interchange with the rest of the grid stays fixed (up to
  the loss change outside the footprint).
* **Reactive limits**: ``q_limits=True`` (the study's default) holds a generator
  bus that would leave [Qmin, Qmax] at the limit as a PQ bus, and releases it
  back to voltage control when its voltage comes back to the other side of the
  setpoint by more than ``RELEASE_PU`` (a bus at Qmax above its setpoint, or at
  Qmin below it, is released): the solution returned has every
  voltage-controlling generator within its Q limits and every held one at a
  limit on the consistent side. Searches (``search=True``) skip the release,
  which only moves buses near their setpoint and costs solves.
* **Warm start**: ``warm``, a nearby :class:`OperatingPoint` (its voltages and
  the set of buses held at a Q limit), or just voltages ``V0``.

How it is solved today, with the engine on this branch (no distributed slack, no
outages, one set of bus types per batch): the responders are dispatched for
demand + a loss estimate (:func:`gridflow.study.dispatch.dispatch`), the point is
solved by :func:`gridflow.newton.newtonpf` with the Q-held buses as PQ
(patterns and symbolic factorizations from :func:`gridflow.solve.prepare`), the
loss estimate is replaced by the losses the solution shows, and this repeats
until the slack buses carry less than ``tol_mw`` beyond their dispatch. A slack
generator is dispatched at least ``2 * tol_mw`` inside its P limits, so what it
carries on top never takes it outside them. If the warm Newton fails, the point
is solved once more from the engine's own starts (:func:`gridflow.solve` with
``enforce_q_lims``), except in searches, which approach a hard point in steps.
:func:`solve_points` solves points one after the other, each warm-started from
the one before: :func:`gridflow.solve_batch` cannot
help while Q limits are on (a batch shares one set of bus types, and the set
held at a limit differs from point to point). The engine's distributed slack
and batched Newton will replace the inside of both functions; their contract
stays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridflow.case import REF, Case
from gridflow.errors import GridflowError
from gridflow.network import make_sbus
from gridflow.newton import newtonpf
from gridflow.results import PowerFlowResult, gen_dispatch, make_result
from gridflow.solve import initial_voltage, prepare, solve
from gridflow.study.dispatch import dispatch

#: searches (bisections) solve to this tolerance, enough to tell convergence and limits apart,
#: and give up sooner on collapse (a collapse shows as no convergence)
SEARCH_TOL_MVA = 1e-3
SEARCH_MAX_ITER = 15
TOL_MVA = 1e-8
MAX_ITER = 30
#: the slack buses may carry this many MW beyond their dispatch (the losses' last correction)
TOL_MW = 5.0
#: a held generator is released when its bus voltage is this far on the wrong side of its setpoint, pu
#: (a dead band, as voltage regulators have: without it, buses at the edge flip back and forth)
RELEASE_PU = 1e-3
#: rounds of releases at most in one solve
MAX_RELEASES = 2
MAX_Q_ROUNDS = 30


@dataclass(frozen=True)
class QHeld:
    """Generators held at a reactive limit: mask (ng,) and the MVAr each is held at (pu on base MVA)."""

    held: np.ndarray
    q_pu: np.ndarray

    @classmethod
    def none(cls, ng: int) -> QHeld:
        return cls(np.zeros(ng, bool), np.zeros(ng))


@dataclass(frozen=True)
class OperatingPoint:
    """One solved operating point.

    Attributes
    ----------
    result : PowerFlowResult
        The AC solution (``result.converged`` False: no solution, nothing else is meaningful).
    case : Case
        The case as solved: the caller's demand, generators at the dispatch ``pg_mw``.
    pg_mw : float (ng,)
        The dispatch the generators were given, MW (the slack buses' actual output differs by
        at most ``tol_mw`` when converged).
    unmet_mw : float
        Demand and losses the responders could not pick up within their limits, MW (> 0: the
        slack buses carried it; such a point is not a feasible dispatch).
    losses_mw : float
        Network losses of the solution, MW (NaN when not converged).
    q_limits : bool
        Whether generator Q limits were enforced.
    q_held : QHeld
        Generators held at a Q limit in the solution (for warm starts).
    """

    result: PowerFlowResult
    case: Case
    pg_mw: np.ndarray
    unmet_mw: float
    losses_mw: float
    q_limits: bool
    q_held: QHeld | None = None

    @property
    def converged(self) -> bool:
        return bool(self.result.converged)

    @property
    def V(self) -> np.ndarray:
        return self.result.V


def _responder_mask(case: Case, responders) -> np.ndarray:
    if responders is None:
        return case.gen.status.copy()
    r = np.asarray(responders, dtype=bool)
    if r.shape != (case.ng,):
        raise GridflowError(f"responders must be a bool mask over the {case.ng} generators, got shape {r.shape}")
    return r & case.gen.status


def _solve_q(case: Case, V0, held: QHeld, *, q_limits: bool, tol: float, max_iter: int, release: bool = True):
    """Newton with the generators of ``held`` at their Q (their buses PQ), re-held and released until
    consistent (see the module docstring). Returns (NewtonResult, QHeld, iterations)."""
    prep = prepare(case)
    net = prep.net
    gen = case.gen
    on = net.gen_on
    nb = case.nb
    Sbus0 = make_sbus(case, net)
    fixed = held.held & on
    q = held.q_pu.copy()
    vset = np.zeros(nb)
    vset[gen.bus[on]] = gen.vg[on]
    pv_all = net.pv
    V = np.asarray(V0, dtype=complex).copy()
    its, releases = 0, 0
    r = None
    for _ in range(MAX_Q_ROUNDS):
        fixed_bus = np.unique(gen.bus[fixed])
        pv = np.setdiff1d(pv_all, fixed_bus)
        pq = np.union1d(net.pq, np.intersect1d(pv_all, fixed_bus))
        Qsched = np.zeros(nb)
        np.add.at(Qsched, gen.bus[fixed], q[fixed] - gen.qg[fixed])
        Vs = np.where(np.abs(V) > 0, V, 1.0)
        ctl = np.r_[pv, net.ref]
        Vs[ctl] = vset[ctl] * Vs[ctl] / np.abs(Vs[ctl])
        Vs = np.where(net.energized, Vs, 0.0)
        pattern, lin = prep.linear(pv, pq)
        r = newtonpf(net.Ybus, Sbus0 + 1j * Qsched, Vs, net.ref, pv, pq, tol=tol, max_iter=max_iter,
                     line_search=True, pattern=pattern, lin=lin)
        its += r.iterations
        if not r.converged or not q_limits:
            break
        V = r.V
        _, Qg = gen_dispatch(case, net.Ybus, V, net.ref, on)
        cand = on & ~fixed & np.isin(gen.bus, pv)
        over = cand & (Qg > gen.qmax + tol)
        under = cand & (Qg < gen.qmin - tol)
        if (over | under).any():
            buses = np.unique(gen.bus[over | under])
            at = on & ~fixed & np.isin(gen.bus, buses)
            q = np.where(over, gen.qmax, np.where(under, gen.qmin, np.where(at, Qg, q)))
            fixed |= at
            continue
        # release a held bus whose voltage is on the wrong side of its setpoint
        vm = np.abs(V)
        # (a generator with Qmin = Qmax never regulates: never released)
        free = fixed & (gen.qmax - gen.qmin > 1e-9)
        at_max = free & (q >= gen.qmax - 1e-9)
        at_min = free & (q <= gen.qmin + 1e-9)
        wrong = (at_max & (vm[gen.bus] > vset[gen.bus] + RELEASE_PU)) | (at_min & (vm[gen.bus] < vset[gen.bus]
                                                                                  - RELEASE_PU))
        if not release or not wrong.any() or releases >= MAX_RELEASES:
            break
        releases += 1
        fixed &= ~np.isin(gen.bus, np.unique(gen.bus[wrong]))
    return r, QHeld(fixed, np.where(fixed, q, 0.0)), its


def _held_from(res: PowerFlowResult, case: Case) -> QHeld:
    """The generators a solution holds at a Q limit: those at PV buses whose voltage left the setpoint."""
    gen = case.gen
    net = prepare(case).net
    vm = np.abs(res.V)
    on = net.gen_on & np.isin(gen.bus, net.pv)
    off_set = on & (np.abs(vm[gen.bus] - gen.vg) > 1e-6)
    q = res.gen["q_mvar"].to_numpy() / case.base_mva
    return QHeld(off_set, np.where(off_set, q, 0.0))


def _result(case: Case, r, its: int, init: str) -> PowerFlowResult:
    net = prepare(case).net
    message = "" if r.converged else (f"power flow did not converge ({its} iterations): worst mismatch "
                                      f"{r.max_mismatch * case.base_mva:.4g} MVA at bus "
                                      f"{int(case.bus.number[r.worst_bus])}" + (f"; {r.reason}" if r.reason else ""))
    return make_result(case, net, r.V, converged=r.converged, iterations=its, max_mismatch_pu=r.max_mismatch,
                       worst_bus=r.worst_bus, init=init, backend="cpu", message=message)


def _one(case: Case, V, held: QHeld | None, *, q_limits, tol_mva, max_iter, search,
         release=True) -> tuple[PowerFlowResult, QHeld]:
    """Solve ``case`` warm (V, held), else from the engine's own starts."""
    tol = tol_mva / case.base_mva
    if V is not None:
        r, h, its = _solve_q(case, V, held or QHeld.none(case.ng), q_limits=q_limits, tol=tol, max_iter=max_iter,
                             release=release)
        if r.converged or search:  # a search approaches the nose in steps instead of restarting cold
            return _result(case, r, its, "warm"), h
    res = solve(case, enforce_q_lims=q_limits, tol_mva=tol_mva, max_iter=max_iter,
                init="case" if search else "auto")
    if not res.converged:
        return res, QHeld.none(case.ng)
    h = _held_from(res, case) if q_limits else QHeld.none(case.ng)
    # one consistent pass of our own loop from the engine's answer (release what it never releases)
    r, h, its = _solve_q(case, res.V, h, q_limits=q_limits, tol=tol, max_iter=max_iter)
    return (_result(case, r, res.iterations + its, res.init), h) if r.converged else (res, h)


def solve_point(case: Case, *, responders=None, q_limits: bool = True, warm=None, V0=None,
                losses_mw: float | None = None, search: bool = False, tol_mw: float = TOL_MW,
                rounds: int = 4) -> OperatingPoint:
    """Solve ``case``'s demand with the ``responders`` picking up demand and losses by headroom.

    Parameters
    ----------
    case : Case
        Network, demand (``bus.pd``, ``bus.qd``) and the dispatch of every generator that does
        not respond (``gen.pg``).
    responders : bool (ng,), optional
        Generators that respond (default: every online generator); all False: nobody responds,
        the slack buses take every difference (a plain power flow of the case as given).
    q_limits : bool
        Enforce generator reactive limits (see the module docstring).
    warm : OperatingPoint, optional
        A nearby solution: its voltages and its generators held at Q limits start this one.
    V0 : complex (nb,), optional
        Start voltages (when there is no ``warm``).
    losses_mw : float, optional
        First guess of the losses, MW (default: ``warm``'s, else 2 % of demand).
    search : bool
        Looser tolerance (``SEARCH_TOL_MVA``) and fewer iterations, for bisections.
    tol_mw : float
        The slack buses may carry this much beyond their dispatch, MW.
    rounds : int
        Dispatch-and-solve rounds at most.

    Returns
    -------
    OperatingPoint
    """
    tol_mva, max_iter = (SEARCH_TOL_MVA, SEARCH_MAX_ITER) if search else (TOL_MVA, MAX_ITER)
    resp = _responder_mask(case, responders)
    base = case.base_mva
    pg_case = np.where(case.gen.status, case.gen.pg * base, 0.0)
    held = None
    if warm is not None:
        V0, held = warm.V, warm.q_held
        losses_mw = warm.losses_mw if losses_mw is None else losses_mw
    if V0 is not None:
        V0 = np.asarray(V0, dtype=complex)
        if V0.shape != (case.nb,) or not np.isfinite(V0).all():
            raise GridflowError(f"V0 must be {case.nb} finite complex voltages")
    if not resp.any():
        res, h = _one(case, V0, held, q_limits=q_limits, tol_mva=tol_mva, max_iter=max_iter, search=search)
        return OperatingPoint(res, case, pg_case, 0.0, _losses(res), q_limits, h)
    load = float(case.bus.pd.sum() * base)
    losses = 0.02 * load if losses_mw is None or not np.isfinite(losses_mw) else float(losses_mw)
    g = case.gen
    slack = g.status & (case.bus.type[g.bus] == REF)
    # the slack generators carry the last loss correction: dispatch them 2 tol_mw inside their limits
    margin = 2.0 * tol_mw
    pmax = np.where(slack, np.maximum(g.pmax * base - margin, g.pmin * base), g.pmax * base)
    pmin = np.where(slack, np.minimum(g.pmin * base + margin, pmax), g.pmin * base)
    base_pg = np.where(resp, np.clip(pg_case, pmin, np.maximum(pmax, pmin)), pg_case)
    held_mw = float(pg_case[~resp].sum())
    res = dispatched = d = None
    h = held
    for k in range(max(rounds, 1)):
        d = dispatch(case, load + losses - held_mw, base_pg, responders=resp, pmax_mw=pmax, pmin_mw=pmin)
        pg = np.where(resp, d.pg_mw, pg_case)
        dispatched = case.replace(gen={"pg": pg / base})
        # the held set settles in the first round; later rounds only move a few MW of losses
        res, h = _one(dispatched, V0, h, q_limits=q_limits, tol_mva=tol_mva, max_iter=max_iter, search=search,
                      release=k == 0 and not search)
        if not res.converged:
            break
        V0 = res.V
        gen_total = float(res.gen["p_mw"].sum())
        mismatch = gen_total - float(pg.sum())
        losses = gen_total - load
        if abs(mismatch) <= tol_mw:
            break
    return OperatingPoint(res, dispatched, dispatched.gen.pg * base, float(d.unmet_mw), _losses(res), q_limits, h)


def solve_points(case: Case, p_mw, q_mvar, *, responders=None, q_limits: bool = True, warm=None,
                 search: bool = False, pg_mw=None) -> list[OperatingPoint]:
    """Solve T demand vectors of one network: point t has loads ``p_mw[t]``, ``q_mvar[t]`` (MW, MVAr,
    (T, nb)) and, when given, the held generators at ``pg_mw[t]`` (MW, (T, ng)); the rest as
    :func:`solve_point`. Each point starts from the one before (the first from ``warm``)."""
    p = np.atleast_2d(np.asarray(p_mw, dtype=float))
    q = np.atleast_2d(np.asarray(q_mvar, dtype=float))
    if p.shape != q.shape or p.shape[1] != case.nb:
        raise GridflowError(f"p_mw {p.shape} and q_mvar {q.shape} must both be (T, {case.nb})")
    if pg_mw is not None:
        pg_mw = np.atleast_2d(np.asarray(pg_mw, dtype=float))
        if pg_mw.shape != (p.shape[0], case.ng):
            raise GridflowError(f"pg_mw must be ({p.shape[0]}, {case.ng}), got {pg_mw.shape}")
    out = []
    for t in range(p.shape[0]):
        changes = {"bus": {"pd": p[t] / case.base_mva, "qd": q[t] / case.base_mva}}
        if pg_mw is not None:
            changes["gen"] = {"pg": pg_mw[t] / case.base_mva}
        pt = solve_point(case.replace(**changes), responders=responders, q_limits=q_limits, warm=warm, search=search)
        out.append(pt)
        if pt.converged:
            warm = pt
    return out


def _losses(res: PowerFlowResult) -> float:
    return float(res.branch["pl_mw"].sum()) if res.converged else float("nan")


def start_voltage(case: Case) -> np.ndarray:
    """The case's stored voltages with generator setpoints (a cold start for :func:`solve_point`)."""
    return initial_voltage(case, prepare(case).net, "case")
