"""The study's one seam to the AC power-flow engine: solve an operating point, or many.

Every AC solve of the study goes through :func:`solve_point` or
:func:`solve_points`; nothing else in ``gridflow.study`` calls
:func:`gridflow.solve`. What a study needs from the engine is stated here once:

* **Demand**: the case's bus loads (``pd``, ``qd``) are the study's demand
  (datacenters added, shed taken off); the caller builds that case.
* **Who responds**: ``responders`` (bool (ng,)) are the generators that pick up
  the change of demand and losses, in proportion to their headroom
  (``Pmax - Pg`` when demand rises, ``Pg - Pmin`` when it falls: participation =
  headroom within the footprint). Every other generator holds the ``pg`` the
  caller gave it, so interchange with the rest of the grid stays fixed (up to
  the loss change outside the footprint).
* **Reactive limits**: ``q_limits=True`` (the study's default) switches a
  generator bus that leaves [Qmin, Qmax] to PQ at the limit and re-solves
  (MATPOWER's ``ENFORCE_Q_LIMS``); ``False`` only where the caller says so.
* **Warm start**: ``V0``, the solution of a nearby point.

How it is solved today (the engine has no distributed slack yet): the
responders are dispatched for demand + a loss estimate
(:func:`gridflow.study.dispatch.dispatch`), the case is solved, the loss
estimate is replaced by the losses the solution shows, and this repeats until
the slack buses carry less than ``tol_mw`` beyond their dispatch (at most
``rounds`` times). A slack generator is dispatched at least ``tol_mw`` inside
its P limits, so what it carries on top never takes it outside them.
:func:`solve_points` solves the points one after the other, each warm-started
from the previous solution: :func:`gridflow.solve_batch` cannot help while Q
limits are on (a batch shares one set of bus types, and PV -> PQ switching is
per point).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridflow.case import REF, Case
from gridflow.errors import GridflowError
from gridflow.results import PowerFlowResult
from gridflow.solve import solve
from gridflow.study.dispatch import dispatch

#: searches (bisections) solve to this tolerance, enough to tell convergence and limits apart,
#: and give up sooner on collapse (a collapse shows as no convergence)
SEARCH_TOL_MVA = 1e-3
SEARCH_MAX_ITER = 15
#: the slack buses may carry this many MW beyond their dispatch (the losses' last correction)
TOL_MW = 5.0


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
    """

    result: PowerFlowResult
    case: Case
    pg_mw: np.ndarray
    unmet_mw: float
    losses_mw: float
    q_limits: bool

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


def _slack_gens(case: Case) -> np.ndarray:
    return case.gen.status & (case.bus.type[case.gen.bus] == REF)


def solve_point(case: Case, *, responders=None, q_limits: bool = True, V0=None, losses_mw: float | None = None,
                search: bool = False, tol_mw: float = TOL_MW, rounds: int = 4) -> OperatingPoint:
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
        Enforce generator reactive limits (PV -> PQ).
    V0 : complex (nb,), optional
        Warm start.
    losses_mw : float, optional
        First guess of the losses, MW (default: the case's dispatch shows them; else 2 % of demand).
    search : bool
        Looser tolerance (``SEARCH_TOL_MVA``) and fewer iterations, for bisections.
    tol_mw : float
        The slack buses may carry this much beyond their dispatch, MW.
    rounds : int
        Dispatch-and-solve rounds at most.
    """
    opts = dict(enforce_q_lims=q_limits)
    if search:
        opts.update(init="case", max_iter=SEARCH_MAX_ITER, tol_mva=SEARCH_TOL_MVA)
    resp = _responder_mask(case, responders)
    base = case.base_mva
    pg_case = np.where(case.gen.status, case.gen.pg * base, 0.0)
    if not resp.any():
        res = solve(case, V0=V0, **opts)
        return OperatingPoint(res, case, pg_case, 0.0, _losses(res), q_limits)
    load = float(case.bus.pd.sum() * base)
    losses = 0.02 * load if losses_mw is None else float(losses_mw)
    slack = _slack_gens(case)
    # the slack generators carry the last loss correction: dispatch them tol_mw inside their limits
    pmax = np.where(slack, np.maximum(case.gen.pmax * base - tol_mw, case.gen.pmin * base), case.gen.pmax * base)
    pmin = np.where(slack, np.minimum(case.gen.pmin * base + tol_mw, pmax), case.gen.pmin * base)
    held = float(pg_case[~resp].sum())
    res = dispatched = d = None
    for _ in range(max(rounds, 1)):
        d = dispatch(case, load + losses - held, pg_case, responders=resp, pmax_mw=pmax, pmin_mw=pmin)
        pg = np.where(resp, d.pg_mw, pg_case)
        dispatched = case.replace(gen={"pg": pg / base})
        res = solve(dispatched, V0=V0, **opts)
        if not res.converged:
            break
        V0 = res.V
        gen_total = float(res.gen["p_mw"].sum())
        mismatch = gen_total - float(pg.sum())
        losses = gen_total - load
        if abs(mismatch) <= tol_mw:
            break
    return OperatingPoint(res, dispatched, dispatched.gen.pg * base, float(d.unmet_mw), _losses(res), q_limits)


def solve_points(case: Case, p_mw, q_mvar, *, responders=None, q_limits: bool = True, V0=None,
                 search: bool = False, pg_mw=None) -> list[OperatingPoint]:
    """Solve T demand vectors of one network: point t has loads ``p_mw[t]``, ``q_mvar[t]`` (MW, MVAr,
    (T, nb)) and, when given, the held generators at ``pg_mw[t]`` (MW, (T, ng)); the rest as
    :func:`solve_point`. Each point starts from the previous one's solution (the first from ``V0``)."""
    p = np.atleast_2d(np.asarray(p_mw, dtype=float))
    q = np.atleast_2d(np.asarray(q_mvar, dtype=float))
    if p.shape != q.shape or p.shape[1] != case.nb:
        raise GridflowError(f"p_mw {p.shape} and q_mvar {q.shape} must both be (T, {case.nb})")
    if pg_mw is not None:
        pg_mw = np.atleast_2d(np.asarray(pg_mw, dtype=float))
        if pg_mw.shape != (p.shape[0], case.ng):
            raise GridflowError(f"pg_mw must be ({p.shape[0]}, {case.ng}), got {pg_mw.shape}")
    out = []
    losses = None
    for t in range(p.shape[0]):
        changes = {"bus": {"pd": p[t] / case.base_mva, "qd": q[t] / case.base_mva}}
        if pg_mw is not None:
            changes["gen"] = {"pg": pg_mw[t] / case.base_mva}
        pt = solve_point(case.replace(**changes), responders=responders, q_limits=q_limits, V0=V0, search=search,
                         losses_mw=losses)
        out.append(pt)
        if pt.converged:
            V0, losses = pt.V, pt.losses_mw
    return out


def _losses(res: PowerFlowResult) -> float:
    return float(res.branch["pl_mw"].sum()) if res.converged else float("nan")
