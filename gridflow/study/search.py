"""Searches of the study: the largest datacenter MW that still solves (the hosting limit), and the
least extra shed near the datacenters that leaves a clean AC solution; both by bisection on AC
solves (:mod:`gridflow.study.acsolve`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridflow.case import Case
from gridflow.study import allocation as alloc
from gridflow.study.acsolve import OperatingPoint, solve_point
from gridflow.study.demand import Loads, served_case
from gridflow.study.screening import Baseline, Screen, screen
from gridflow.study.zones import ZoneMap

#: bisection stops when the bracket is this narrow, MW
BISECT_MW = 50.0


@dataclass(frozen=True)
class StepContext:
    """What every search and check of one step needs (arrays over the buses (nb,))."""

    case: Case
    zones: ZoneMap
    base: Baseline
    loads: Loads
    critical: np.ndarray  # bool (nb,)
    local: np.ndarray  # bool (nb,): buses of the datacenters' zones
    v_tol_pu: float
    loading_tol_percent: float
    q_limits: bool = False

    def solve(self, a: alloc.Allocation | None, *, search: bool = True, dark_mw=None) -> OperatingPoint:
        return solve_point(served_case(self.case, self.loads, a, dark_mw), q_limits=self.q_limits, search=search)

    def screen(self, pt: OperatingPoint) -> Screen:
        return screen(self.case, pt.result, self.base, v_tol=self.v_tol_pu, loading_tol=self.loading_tol_percent)

    def problem(self, loads: Loads, shortfall_mw: float, *, only=None, ratio=None) -> alloc.ShedProblem:
        """A ShedProblem on ``loads``; ``only`` (bool (nb,)) limits who may shed."""
        keep = np.ones(len(loads.firm_p_mw), bool) if only is None else only
        z = np.where(keep, 1.0, 0.0)
        dc_rest = np.maximum(loads.dc_p_mw - loads.flex_p_mw, 0.0)
        return alloc.ShedProblem(firm_p_mw=loads.firm_p_mw * z, firm_q_mvar=loads.firm_q_mvar * z,
                                 flex_p_mw=loads.flex_p_mw * z, dc_p_mw=dc_rest * z, dc_q_mvar=loads.dc_q_mvar * z,
                                 zone=self.zones.zone, critical=self.critical,
                                 shortfall_mw=float(max(shortfall_mw, 0.0)), zone_ratio=ratio)


def drivers(s: Screen) -> list[str]:
    """What a screen says limits the step: collapse, overload, voltage."""
    if not s.converged:
        return ["collapse"]
    out = []
    if len(s.new_overloads) or len(s.worsened_overloads):
        out.append("overload")
    if len(s.new_voltage):
        out.append("voltage")
    return out


def hosting_limit(ctx: StepContext, dc_total_mw: float, lo_mw: float = 0.0) -> float:
    """Largest total datacenter MW (same sites, same shares) that still solves, MW; ``lo_mw``: a total
    already known to solve."""
    loads = ctx.loads
    hi = float(dc_total_mw)
    lo = float(lo_mw)
    scale = np.where(loads.dc_p_mw > 0, 1.0, 0.0)
    while hi - lo > max(BISECT_MW, 0.01 * hi):
        mid = 0.5 * (lo + hi)
        k = mid / dc_total_mw
        trial = Loads(loads.firm_p_mw, loads.firm_q_mvar, loads.dc_p_mw * (1 - scale + scale * k),
                      loads.dc_q_mvar * k, loads.flex_p_mw * k)
        pt = solve_point(served_case(ctx.case, trial, None), q_limits=ctx.q_limits, search=True)
        lo, hi = (mid, hi) if pt.converged else (lo, mid)
    return lo


def local_bisection(ctx: StepContext, a: alloc.Allocation, allocate, hosting_mw: float | None):
    """Extra MW shed inside the datacenters' zones (shared by ``allocate``, a policy's allocate) until the
    AC solution is clean. Returns (allocation, operating point, drivers seen).

    The search brackets the answer between the collapse requirement (datacenter MW above the hosting
    limit) and the local datacenter MW (shedding that much returns the zones' net demand to the base
    case's, so the generators return to their base dispatch); only if that is not clean does it go on
    to all sheddable load there. If nothing tried is clean, the least bad trial is kept and reported.
    """
    loads = ctx.loads
    rest = loads.remaining(a)
    sheddable = float(np.where(ctx.local & ~ctx.critical, rest.total_p_mw, 0.0).sum())
    dc_local = float(np.where(ctx.local, rest.dc_p_mw, 0.0).sum())

    def trial(x):
        extra = (alloc.Allocation.none(ctx.case.nb, a.policy) if x <= 0
                 else allocate(ctx.problem(rest, x, only=ctx.local)))
        tot = a.plus(extra)
        pt = ctx.solve(tot)
        return tot, pt, ctx.screen(pt)

    def badness(s: Screen):
        return (0 if s.converged else 1, len(s.new_overloads) + len(s.worsened_overloads) + len(s.new_voltage))

    tried = [trial(0.0)]
    if tried[0][2].clean:
        return tried[0][0], tried[0][1], []
    seen = drivers(tried[0][2])
    lo = 0.0 if hosting_mw is None else max(0.0, float(loads.dc_p_mw.sum()) - hosting_mw)
    best = None
    for hi in dict.fromkeys(x for x in (min(dc_local, sheddable), sheddable) if x > lo):
        cand = trial(hi)
        tried.append(cand)
        if cand[2].clean:
            best = cand
            break
    if best is None:
        least_bad = min(tried, key=lambda t: badness(t[2]))
        return least_bad[0], least_bad[1], seen
    while hi - lo > max(BISECT_MW, 0.005 * hi):
        mid = 0.5 * (lo + hi)
        cand = trial(mid)
        if cand[2].clean:
            hi, best = mid, cand
        else:
            lo = mid
            if cand[2].converged:
                seen += drivers(cand[2])
    return best[0], best[1], seen


#: rounds of linear program + AC for the network policy
NETWORK_ROUNDS = 6


def network_rounds(ctx: StepContext, a: alloc.Allocation, policy, hosting_mw: float | None):
    """The network policy's LP around the AC solution, re-linearized until clean. Returns
    (allocation, operating point or None, drivers seen)."""
    import logging

    from gridflow.results import rating_mva
    from gridflow.study.sensitivity import shed_sensitivity

    log = logging.getLogger(__name__)
    loads = ctx.loads
    seen = []
    if hosting_mw is not None:  # get to a solvable point first: the datacenters above the limit go (cheapest)
        need = float(loads.dc_p_mw.sum()) - hosting_mw
        first = alloc.allocate_large_load_first(ctx.problem(loads.remaining(a), need, only=ctx.local))
        a = a.plus(first)
    monitored = np.zeros(0, np.int64)
    pt = None
    for _ in range(NETWORK_ROUNDS):
        pt = ctx.solve(a)
        s = ctx.screen(pt)
        if s.clean or not s.converged:
            break
        seen += drivers(s)
        if not len(s.problem_branches):
            break
        monitored = np.union1d(monitored, s.problem_branches)
        H = shed_sensitivity(pt.case, monitored)
        flow0 = pt.result.branch["p_from_mw"].to_numpy()[monitored]
        rate = rating_mva(ctx.case, ctx.base.rating)[monitored]
        was = np.nan_to_num(ctx.base.loading[monitored])
        # allowed MVA: the rating, or the base loading for pre-existing overloads; used as the P limit
        limit = np.where(was > 100.0, rate * was / 100.0, rate) * 0.995
        step = policy.allocate(ctx.problem(loads.remaining(a), 0.0), H=H, flow0_mw=flow0, limit_mw=limit)
        log.info("network round: %d monitored branches, shed %.0f MW (flexible %.0f, backup %.0f, firm %.0f), "
                 "violation left %.1f MW", len(monitored), step.total_mw, step.p_flex_mw.sum(),
                 step.p_backup_mw.sum(), step.p_firm_mw.sum(), step.max_violation_mw)
        if step.total_mw <= 1e-6:
            break
        a = a.plus(step)
    return a, pt, seen
