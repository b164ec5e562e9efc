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
  limit on the consistent side. Searches release too: a point judged against
  a reference must settle its reactive limits the same way (without the
  release, points of a bisection held generators at Qmax with their voltage
  above the setpoint, and remote overvoltages of 0.05 pu appeared between a
  reference and a point 62 MW apart on ACTIVSg25k).
* **Warm start**: ``warm``, a nearby :class:`OperatingPoint` (its voltages and
  the set of buses held at a Q limit), or just voltages ``V0``.

How it is solved: one call of the engine (:func:`gridflow.solve.solve_with_model`
on the topology's cached :class:`~gridflow.model.PowerFlowModel`) with a
**distributed slack** whose participation factors are the responders'
headroom (``Pmax - Pg`` when the demand and losses need more than the
responders' dispatch, ``Pg - Pmin`` when less; every other unit 0, so it holds
its dispatch exactly), generators held at Pmax/Pmin (the engine's P limits),
and the engine's Q limits with release (``q_release``). A warm start passes
the held set, so a bus held at a limit starts as PQ; if it fails, the case's
stored voltages are tried too (near a nose a warm start can fail where a cold
one does not: without that, a search found the nose of ACTIVSg25k's "PJM
elsewhere" at 1,125 MW instead of 3,406 MW). When the responders' headroom
cannot cover what is needed, they are set at their limit and the case's
slack buses carry the rest (``unmet_mw`` > 0: not a feasible dispatch).
:func:`solve_points` solves points one after the other, each warm-started
from the one before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridflow.case import Case
from gridflow.errors import GridflowError
from gridflow.model import MAX_RELEASES, RELEASE_PU  # noqa: F401 - the seam's release rule is the engine's
from gridflow.results import PowerFlowResult
from gridflow.solve import model_for, solve_with_model
from gridflow.start import initial_voltage

#: searches (bisections) solve to this tolerance, enough to tell convergence and limits apart,
#: and give up sooner on collapse (a collapse shows as no convergence)
SEARCH_TOL_MVA = 1e-3
SEARCH_MAX_ITER = 15
TOL_MVA = 1e-8
MAX_ITER = 30
#: kept for callers: the engine's distributed slack balances exactly, so the slack buses carry nothing beyond
#: their dispatch (0 MW); a point counts as balanced within this
TOL_MW = 5.0



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


def _held(res: PowerFlowResult, case: Case) -> QHeld:
    """The generators whose Q the engine holds in ``res`` (at a limit, or at their output on a bus switched to
    PQ) and the MVAr (pu) each is held at."""
    mask = np.zeros(case.ng, bool)
    if res.converged and "q_held" in res.extra:
        mask[np.asarray(res.extra["q_held"], np.int64)] = True
    q = res.gen["q_mvar"].to_numpy() / case.base_mva
    return QHeld(mask, np.where(mask, q, 0.0))


def _engine(case: Case, V0, held: QHeld | None, *, q_limits, search, participation=None):
    """One engine solve (distributed slack over ``participation`` when given), warm from ``V0``/``held``."""
    tol_mva, max_iter = (SEARCH_TOL_MVA, SEARCH_MAX_ITER) if search else (TOL_MVA, MAX_ITER)
    opts = dict(enforce_q_lims=q_limits, q_release=q_limits, tol_mva=tol_mva, max_iter=max_iter,
                init="case" if search else "auto", V0=V0,
                q_held=None if held is None or not q_limits else (held.held, held.q_pu))
    if participation is not None:
        opts.update(distributed_slack=True, participation=participation, enforce_p_lims=True)
    return solve_with_model(model_for(case), case, **opts)


def solve_point(case: Case, *, responders=None, q_limits: bool = True, warm=None, V0=None,
                losses_mw: float | None = None, search: bool = False) -> OperatingPoint:
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
        Estimate of the losses, MW (default: ``warm``'s, else 2 % of demand): only to decide whether the
        responders must add or give up power (their participation is their headroom or their footroom).
    search : bool
        Looser tolerance (``SEARCH_TOL_MVA``) and fewer iterations, for bisections.

    Returns
    -------
    OperatingPoint
    """
    resp = _responder_mask(case, responders)
    base = case.base_mva
    g = case.gen
    pg = np.where(g.status, g.pg, 0.0)
    held = None
    if warm is not None:
        V0, held = warm.V, warm.q_held
        losses_mw = warm.losses_mw if losses_mw is None else losses_mw
    if V0 is not None:
        V0 = np.asarray(V0, dtype=complex)
        if V0.shape != (case.nb,) or not np.isfinite(V0).all():
            raise GridflowError(f"V0 must be {case.nb} finite complex voltages")
    if not resp.any():
        res = _engine(case, V0, held, q_limits=q_limits, search=search)
        return OperatingPoint(res, case, pg * base, 0.0, _losses(res), q_limits, _held(res, case))
    # what the responders must add (or give up): demand + a loss estimate - everyone's dispatch
    load = float(case.bus.pd.sum())
    losses = 0.02 * load if losses_mw is None or not np.isfinite(losses_mw) else float(losses_mw) / base
    need = load + losses - float(pg.sum())
    up = need >= 0
    room = np.where(resp, np.maximum(g.pmax - pg, 0.0) if up else np.maximum(pg - g.pmin, 0.0), 0.0)
    room = np.where(np.isfinite(room), room, 0.0)
    unmet = 0.0
    res = None
    if room.sum() > max(abs(need), 1e-9) * 1.0001 or (room.sum() > 0 and abs(need) < 1e-9):
        res = _engine(case, V0, held, q_limits=q_limits, search=search, participation=room)
    if res is None or (not res.converged and "no generator left" in res.message):
        # the responders cannot cover it: they go to their limit and the case's slack buses carry the rest
        at = np.where(resp, np.where(up, np.maximum(g.pmax, pg), np.minimum(g.pmin, pg)), pg)
        at = np.where(np.isfinite(at), at, pg)
        stretched = case.replace(gen={"pg": at})
        res = _engine(stretched, V0, held, q_limits=q_limits, search=search)
        if res.converged:
            unmet = abs(float(res.gen["p_mw"].sum()) - float(at.sum()) * base)
    p_mw = res.gen["p_mw"].to_numpy()
    dispatched = case.replace(gen={"pg": np.where(g.status, p_mw / base, g.pg)})
    return OperatingPoint(res, dispatched, dispatched.gen.pg * base, float(unmet), _losses(res), q_limits,
                          _held(res, case))


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
    return initial_voltage(case, model_for(case).net, "case")
