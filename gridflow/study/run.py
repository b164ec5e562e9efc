"""The rolling-blackout study: add datacenters, screen, allocate the shed, rotate it, verify it in AC.

For every step (a total datacenter MW):

1. **Place** the datacenter load (:mod:`.datacenters`) and solve the AC power
   flow with the generators picking it up by headroom (:mod:`.acsolve`).
2. **Adequacy**: shortfall = load + losses + reserve - online capacity.
3. **Collapse**: if the power flow does not solve, bisect on the datacenter
   MW for the largest that still solves: the *hosting limit* (:mod:`.search`).
4. **Deliverability** (``pro-rata``, ``large-load-first``): overloads and
   voltage violations that are new against the base case (:mod:`.screening`)
   mean the network cannot carry the new load to where it is. What it cannot
   carry is not served, whatever the policy: the relief comes from the
   datacenters behind it (flexible share first, then backup generation), then
   from firm load in their zones; the MW is the least that gives a clean AC
   solution, found by bisection on AC solves.
5. **Capacity**: the shortfall left after that is shared by the policy
   (:mod:`.policy`). ``network`` instead solves one linear program for the
   shortfall and the flow limits over DC flow sensitivities, re-linearized
   around each new AC solution until it is clean.
6. **Rotation**: each zone's firm obligation becomes rolling blackouts of
   blocks (:mod:`.rotation`); datacenter curtailment and backup generation
   last the whole study.
7. **Verification**: every interval's pattern of dark blocks is solved in AC
   (:mod:`.verify`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gridflow.case import Case
from gridflow.errors import ScenarioError
from gridflow.io import load_case
from gridflow.study import tables
from gridflow.study.acsolve import solve_point
from gridflow.study.allocation import Allocation
from gridflow.study.datacenters import place
from gridflow.study.demand import Loads
from gridflow.study.dispatch import online_capacity_mw
from gridflow.study.policy import get_policy
from gridflow.study.rotation import rotate_zones
from gridflow.study.scenario import Scenario
from gridflow.study.screening import Baseline, Screen, baseline
from gridflow.study.search import StepContext, hosting_limit, local_bisection, network_rounds
from gridflow.study.verify import Verification, dark_mw_by_interval, verify_intervals
from gridflow.study.zones import ZoneMap, load_zone_map

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Adequacy:
    """The step's supply and demand before any shed, MW."""

    capacity_mw: float
    load_mw: float
    losses_mw: float
    reserve_mw: float

    @property
    def shortfall_mw(self) -> float:
        """Load + losses + reserve - online capacity (negative: a margin)."""
        return self.load_mw + self.losses_mw + self.reserve_mw - self.capacity_mw


@dataclass(frozen=True)
class Rotation:
    """Rolling blackouts of a step (see :func:`gridflow.study.rotation.rotate_zones`)."""

    schedule: pd.DataFrame
    block_stats: pd.DataFrame
    zone_stats: pd.DataFrame


@dataclass(frozen=True)
class StepResult:
    """One datacenter size under one policy."""

    datacenter_mw: float
    policy: str
    adequacy: Adequacy
    hosting_limit_mw: float | None
    pre: Screen
    allocation: Allocation
    rotation: Rotation
    verification: Verification
    zones: pd.DataFrame
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def verified(self) -> bool:
        return self.verification.verified

    @property
    def driver(self) -> str:
        return self.allocation.driver


@dataclass(frozen=True)
class StudyResult:
    scenario: Scenario
    case: Case
    zone_map: ZoneMap
    base_vm_pu: np.ndarray
    base: Baseline
    steps: tuple[StepResult, ...]


def run_study(scenario: Scenario, *, policy: str | None = None, case: Case | None = None) -> StudyResult:
    """Run every step of ``scenario`` (its ``steps_mw``, or the datacenters as given) under one policy."""
    if policy is not None:
        scenario = scenario.with_policy(policy)
    case = case if case is not None else load_case(scenario.source)
    zones = load_zone_map(scenario.zones, case)
    opts = scenario.study
    crit = case.bus_index(list(opts.critical_buses)) if opts.critical_buses else np.zeros(0, np.int64)
    base_pt = solve_point(case, responders=np.zeros(case.ng, bool), q_limits=False)
    if not base_pt.converged:
        raise ScenarioError(f"the base case {case.name} does not solve: {base_pt.result.message}")
    base = baseline(case, base_pt.result, opts.rating)
    steps_mw = opts.steps_mw or (sum(d.mw for d in scenario.datacenters),)
    steps = []
    solvable_mw = 0.0  # largest datacenter MW seen to solve before shed: a lower bound for hosting limits
    for mw in steps_mw:
        t0 = time.perf_counter()
        step = _run_step(scenario, case, zones, base, crit, mw, solvable_mw if solvable_mw < mw else 0.0)
        if step.pre.converged:
            solvable_mw = max(solvable_mw, mw)
        step = _with_seconds(step, time.perf_counter() - t0)
        log.info("%s, %.0f MW: %s in %.1f s", opts.policy, mw, "verified" if step.verified else "NOT verified",
                 step.seconds)
        steps.append(step)
    return StudyResult(scenario=scenario, case=case, zone_map=zones, base_vm_pu=base_pt.result.bus["vm_pu"].to_numpy(),
                       base=base, steps=tuple(steps))


def _with_seconds(step: StepResult, seconds: float) -> StepResult:
    from dataclasses import replace

    return replace(step, seconds=seconds)


def _run_step(scenario: Scenario, case: Case, zones: ZoneMap, base: Baseline, crit: np.ndarray,
              total_mw: float, solvable_mw: float = 0.0) -> StepResult:
    opts = scenario.study
    policy = get_policy(opts.policy)
    nb = case.nb
    notes: list[str] = []
    dcl = place(scenario.datacenters, case, zones, total_mw)
    loads = Loads(firm_p_mw=case.bus.pd * case.base_mva, firm_q_mvar=case.bus.qd * case.base_mva,
                  dc_p_mw=dcl.p_mw, dc_q_mvar=dcl.q_mvar, flex_p_mw=dcl.flex_mw)
    crit_mask = np.zeros(nb, bool)
    crit_mask[crit] = True
    site_mask = np.zeros(nb, bool)
    for _, idx in dcl.sites:
        site_mask[idx] = True
    local = np.isin(zones.zone, sorted(set(zones.zone[site_mask])))
    ctx = StepContext(case=case, zones=zones, base=base, loads=loads, critical=crit_mask, local=local,
                      v_tol_pu=opts.voltage_tolerance_pu, loading_tol_percent=opts.loading_tolerance_percent)

    # 1-2. screening and adequacy
    pt0 = ctx.solve(None, search=False)
    pre = ctx.screen(pt0)
    load_mw = float(loads.total_p_mw.sum())
    adequacy = Adequacy(capacity_mw=online_capacity_mw(case), load_mw=load_mw,
                        losses_mw=pt0.losses_mw if pt0.converged else 0.025 * load_mw, reserve_mw=opts.reserve_mw)
    shortfall = adequacy.shortfall_mw
    drivers = ["capacity"] if shortfall > 0 else []

    # 3. collapse: hosting limit of the datacenters
    hosting = None
    if not pre.converged:
        drivers.append("collapse")
        hosting = hosting_limit(ctx, dcl.total_mw, solvable_mw)
        notes.append(f"the datacenters' hosting limit is {hosting:.0f} MW (voltage collapse above it)")

    none = Allocation.none(nb, policy.name, zone=zones.zone)
    if policy.name == "network":
        a = Allocation.none(nb, policy.name, zone=zones.zone, shortfall_mw=max(shortfall, 0.0))
        if shortfall > 0:
            a = policy.allocate(ctx.problem(loads, shortfall))
        a, pt, extra = network_rounds(ctx, a, policy, hosting)
        drivers += extra
        if pt is None or not ctx.screen(pt).clean:
            b, pt_b, extra_b = local_bisection(ctx, none, get_policy("large-load-first").allocate, hosting)
            losses_b = pt_b.losses_mw if pt_b is not None and pt_b.converged else adequacy.losses_mw
            left = load_mw - b.total_mw + losses_b + opts.reserve_mw - adequacy.capacity_mw
            if left > 0:
                b = b.plus(policy.allocate(ctx.problem(loads.remaining(b), left)), driver="capacity")
                pt_b = ctx.solve(b)
            if pt_b is not None and ctx.screen(pt_b).clean:
                a, pt = b, pt_b
                drivers += extra_b
                notes.append("network policy: the linear program did not reach a clean AC solution; the "
                             "datacenters behind the limits were curtailed instead")
    else:
        # 4. deliverability: what the network cannot carry to the new load is not served; the relief
        # comes from the datacenters behind it (flexible share, then backup), then from firm load there
        a, pt, extra = local_bisection(ctx, none, get_policy("large-load-first").allocate, hosting)
        drivers = [d for d in drivers if d != "capacity"] + extra
        # 5. adequacy of what is left: the capacity shortfall, shared by the policy over all zones
        losses_left = pt.losses_mw if pt is not None and pt.converged else adequacy.losses_mw
        left = load_mw - a.total_mw + losses_left + opts.reserve_mw - adequacy.capacity_mw
        if shortfall > 0:
            notes.append(f"capacity shortfall {shortfall:,.0f} MW before shed, {max(left, 0):,.0f} MW once the "
                         "load the network cannot deliver is off")
        if left > 0:
            drivers.insert(0, "capacity")
            cap = policy.allocate(ctx.problem(loads.remaining(a), left, ratio=opts.zone_ratio or None))
            if cap.unmet_mw > 1e-6:
                notes.append(f"{cap.unmet_mw:.0f} MW of the capacity shortfall cannot be shed (critical load)")
            a = a.plus(cap, driver="capacity")
            pt = ctx.solve(a)
    if pt is not None and not ctx.screen(pt).clean:
        notes.append("the allocation leaves problems in the AC solution: " + ctx.screen(pt).describe())
    a = a.plus(Allocation.none(nb, policy.name), driver="+".join(dict.fromkeys(drivers)) or "none")

    # 6. rotation of each zone's firm obligation
    T = int(round(opts.hours * 60 / opts.interval_minutes))
    firm_by_zone = pd.Series(a.p_firm_mw).groupby(zones.zone).sum()
    firm_by_zone = firm_by_zone[firm_by_zone > 1e-6]
    blocks = tables.feeder_blocks(case, zones, loads, a, crit_mask, opts.feeder_mw, only_shed=policy.name == "network")
    blocks = blocks[blocks["zone"].isin(firm_by_zone.index)]
    obligations = {z: np.full(T, float(v)) for z, v in firm_by_zone.items()}
    if obligations:
        rot = Rotation(*rotate_zones(blocks, obligations, interval_minutes=opts.interval_minutes,
                                     max_hours_dark=opts.max_hours_dark))
    else:
        rot = Rotation(pd.DataFrame(columns=["interval", "block", "zone", "dark"]),
                       pd.DataFrame(columns=["zone", "block", "mw", "intervals_dark", "hours_dark",
                                             "longest_outage_hours"]),
                       pd.DataFrame(columns=["zone", "obligation_mw_max", "shed_mw_max", "blocks", "hours_dark_max",
                                             "oe417"]))

    # 7. AC verification of every interval
    ver = verify_intervals(ctx, a, dark_mw_by_interval(nb, T, rot.schedule, blocks))
    if not ver.verified:
        notes.append("AC verification failed: " + "; ".join(ver.failures()[:4]))
    return StepResult(datacenter_mw=float(total_mw), policy=policy.name, adequacy=adequacy, hosting_limit_mw=hosting,
                      pre=pre, allocation=a, rotation=rot, verification=ver,
                      zones=tables.zone_table(zones, loads, a, rot.zone_stats), notes=tuple(notes))
