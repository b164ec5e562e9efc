"""The rolling-blackout study: add datacenters, screen, allocate the shed, rotate it, verify it in AC.

For every step (a total datacenter MW):

1. **Place** the datacenter load (:mod:`.datacenters`) and **dispatch** the
   generators by headroom (:mod:`.dispatch`); solve the AC power flow.
2. **Adequacy**: shortfall = load + losses + reserve - online capacity.
3. **Collapse**: if the power flow does not solve, bisect on the datacenter
   MW for the largest that still solves: the *hosting limit*. The datacenter
   MW above it cannot be served.
4. **Deliverability** (``pro-rata``, ``large-load-first``): overloads and
   voltage violations that are new against the base case (:mod:`.screening`)
   mean the network cannot carry the new load to where it is. What it cannot
   carry is not served, whatever the policy: the relief comes from the
   datacenters behind it (flexible share first, then backup generation), then
   from firm load in their zones; the MW is the least that gives a clean AC
   solution, found by bisection on AC solves. (Shedding firm load in other
   states does not relieve a local import limit, and shedding it in
   proportion inside the zone does not either on ACTIVSg25k: the zone's own
   generation then overloads its export lines.)
5. **Capacity**: the shortfall left after that is shared by the policy over
   all zones (pro-rata by ratio table; large-load-first: remaining datacenter
   load first). ``network`` instead solves one linear program for the
   shortfall and the flow limits over DC flow sensitivities (HiGHS), cheapest
   shed anywhere, re-linearized around each new AC solution until it is clean.
6. **Rotation**: each zone's firm obligation becomes rolling blackouts of
   blocks (feeders of its load buses); datacenter curtailment and backup
   generation last the whole study.
7. **Verification**: every interval's pattern of dark blocks is solved in AC
   with the generators re-dispatched; the allocation is *verified* only if
   every interval converges with nothing new over its limits.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from gridflow.case import Case
from gridflow.io import load_case
from gridflow.results import rating_mva
from gridflow.solve import solve
from gridflow.study import allocation as alloc
from gridflow.study.datacenters import DatacenterLoad, place
from gridflow.study.dispatch import online_capacity_mw, solve_dispatched
from gridflow.study.rotation import rotate_zones
from gridflow.study.scenario import Scenario
from gridflow.study.screening import Baseline, Screen, baseline, screen
from gridflow.study.zones import ZoneMap, load_zone_map

log = logging.getLogger(__name__)

#: bisection stops when the bracket is this narrow, MW
BISECT_MW = 50.0
#: rounds of linear program + AC for the network policy
NETWORK_ROUNDS = 6
#: AC solves during searches: iterations per start (a collapse shows as no convergence) and tolerance;
#: the verification of the final allocation uses the default tolerance
SEARCH_MAX_ITER = 15
SEARCH_TOL_MVA = 1e-3


@dataclass
class Loads:
    """Demand per bus (nb,), MW / MVAr: firm load, datacenter load and its flexible part."""

    firm_p: np.ndarray
    firm_q: np.ndarray
    dc_p: np.ndarray
    dc_q: np.ndarray
    flex: np.ndarray

    @property
    def total_p(self) -> np.ndarray:
        return self.firm_p + self.dc_p


@dataclass
class StepResult:
    """One datacenter size under one policy."""

    datacenter_mw: float
    policy: str
    capacity_mw: float
    load_mw: float
    losses_mw: float
    reserve_mw: float
    shortfall_mw: float
    hosting_limit_mw: float | None
    pre: Screen
    driver: str
    allocation: alloc.Allocation
    zones: pd.DataFrame
    schedule: pd.DataFrame
    block_stats: pd.DataFrame
    zone_stats: pd.DataFrame
    intervals: list
    verified: bool
    shed_by_bus: pd.DataFrame
    bus_demand: pd.DataFrame
    gen_dispatch: pd.DataFrame
    vm_after: np.ndarray | None
    notes: list = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class StudyResult:
    scenario: Scenario
    case: Case
    zone_map: ZoneMap
    base_vm: np.ndarray
    base: Baseline
    steps: list


def run_study(scenario: Scenario, *, policy: str | None = None, case: Case | None = None) -> StudyResult:
    """Run every step of ``scenario`` (its ``steps_mw``, or the datacenters as given) under one policy."""
    if policy is not None:
        scenario = scenario.with_policy(policy)
    case = case if case is not None else load_case(scenario.source)
    zones = load_zone_map(scenario.zones, case)
    opts = scenario.study
    crit = case.bus_index(list(opts.critical_buses)) if opts.critical_buses else np.zeros(0, np.int64)
    base_res = solve(case)
    if not base_res.converged:
        from gridflow.errors import ScenarioError

        raise ScenarioError(f"the base case {case.name} does not solve: {base_res.message}")
    base = baseline(case, base_res, opts.rating)
    steps_mw = opts.steps_mw or (sum(d.mw for d in scenario.datacenters),)
    steps = []
    solvable_mw = 0.0  # largest datacenter MW seen to solve before shed: a lower bound for hosting limits
    for mw in steps_mw:
        t0 = time.perf_counter()
        step = _run_step(scenario, case, zones, base, crit, mw, solvable_mw if solvable_mw < mw else 0.0)
        if step.pre.converged:
            solvable_mw = max(solvable_mw, mw)
        step.seconds = time.perf_counter() - t0
        log.info("%s, %.0f MW: %s in %.1f s", opts.policy, mw, "verified" if step.verified else "NOT verified",
                 step.seconds)
        steps.append(step)
    return StudyResult(scenario=scenario, case=case, zone_map=zones, base_vm=base_res.bus["vm_pu"].to_numpy(),
                       base=base, steps=steps)


# ---------------------------------------------------------------------------------------------- one step

def _served_case(case: Case, loads: Loads, a: alloc.Allocation | None, dark: np.ndarray | None = None) -> Case:
    """The case with the demand left after the shed: flexible and backup shed always; firm shed
    either as allocated per bus (``dark`` None) or as the dark feeders' MW at each bus (``dark`` (nb,))."""
    p = loads.total_p.copy()
    q = loads.firm_q + loads.dc_q
    if a is not None:
        p -= a.p_flex_mw + a.p_backup_mw
        q -= a.q_flex_mvar + a.q_backup_mvar
        if dark is None:
            p -= a.p_firm_mw
            q -= a.q_firm_mvar
        else:
            frac = np.divide(dark, loads.firm_p, out=np.zeros_like(dark), where=loads.firm_p > 0)
            p -= dark
            q -= frac * loads.firm_q
    p = np.maximum(p, 0.0)
    return case.replace(bus={"pd": p / case.base_mva, "qd": q / case.base_mva})


def _solve(case, *, search=False):
    """Dispatch and solve; searches (bisections) stop at SEARCH_TOL_MVA, enough to tell
    convergence and limits apart, and give up sooner on collapse."""
    opts = dict(init="case", max_iter=SEARCH_MAX_ITER, tol_mva=SEARCH_TOL_MVA) if search else {}
    return solve_dispatched(case, **opts)


def _empty(nb, policy, shortfall=0.0):
    z = np.zeros(nb)
    return alloc.Allocation(policy=policy, p_flex_mw=z, p_backup_mw=z, p_firm_mw=z, q_flex_mvar=z,
                            q_backup_mvar=z, q_firm_mvar=z, total_mw=0.0, shortfall_mw=shortfall, unmet_mw=0.0,
                            driver="none")


def _add(a: alloc.Allocation, b: alloc.Allocation, driver: str) -> alloc.Allocation:
    kw = {k: getattr(a, k) + getattr(b, k) for k in ("p_flex_mw", "p_backup_mw", "p_firm_mw", "q_flex_mvar",
                                                    "q_backup_mvar", "q_firm_mvar")}
    return alloc.Allocation(policy=a.policy, total_mw=a.total_mw + b.total_mw,
                            shortfall_mw=a.shortfall_mw + b.shortfall_mw, unmet_mw=a.unmet_mw + b.unmet_mw,
                            driver=driver, max_violation_mw=max(a.max_violation_mw, b.max_violation_mw), **kw)


def _remaining(loads: Loads, a: alloc.Allocation) -> Loads:
    flex_left = np.maximum(loads.flex - a.p_flex_mw, 0.0)
    dc_left = np.maximum(loads.dc_p - a.p_flex_mw - a.p_backup_mw, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        dc_q = np.where(loads.dc_p > 0, loads.dc_q * dc_left / loads.dc_p, 0.0)
        firm_q = np.where(loads.firm_p > 0, loads.firm_q * (loads.firm_p - a.p_firm_mw) / loads.firm_p, 0.0)
    return Loads(firm_p=np.maximum(loads.firm_p - a.p_firm_mw, 0.0), firm_q=firm_q, dc_p=dc_left, dc_q=dc_q,
                 flex=flex_left)


def _problem(loads: Loads, zones: ZoneMap, crit_mask, shortfall, *, only=None, ratio=None) -> alloc.ShedProblem:
    """A ShedProblem on the loads; ``only`` (bool (nb,)) limits who may shed."""
    keep = np.ones(len(loads.firm_p), bool) if only is None else only
    z = np.where(keep, 1.0, 0.0)
    dc_rest = np.maximum(loads.dc_p - loads.flex, 0.0)
    return alloc.ShedProblem(firm_p_mw=loads.firm_p * z, firm_q_mvar=loads.firm_q * z, flex_p_mw=loads.flex * z,
                             dc_p_mw=dc_rest * z, dc_q_mvar=loads.dc_q * z, zone=zones.zone, critical=crit_mask,
                             shortfall_mw=float(max(shortfall, 0.0)), zone_ratio=ratio)


def _policy_fn(policy):
    return {"pro-rata": alloc.allocate_pro_rata, "large-load-first": alloc.allocate_large_load_first}[policy]


def _run_step(scenario: Scenario, case: Case, zones: ZoneMap, base: Baseline, crit: np.ndarray,
              total_mw: float, solvable_mw: float = 0.0) -> StepResult:
    opts = scenario.study
    policy = opts.policy
    nb = case.nb
    notes: list[str] = []
    dcl: DatacenterLoad = place(scenario.datacenters, case, zones, total_mw)
    loads = Loads(firm_p=case.bus.pd * case.base_mva, firm_q=case.bus.qd * case.base_mva, dc_p=dcl.p_mw,
                  dc_q=dcl.q_mvar, flex=dcl.flex_mw)
    crit_mask = np.zeros(nb, bool)
    crit_mask[crit] = True
    site_mask = np.zeros(nb, bool)
    for _, idx in dcl.sites:
        site_mask[idx] = True
    local_zones = sorted(set(zones.zone[site_mask]))
    local = np.isin(zones.zone, local_zones)
    scr = dict(v_tol=opts.voltage_tolerance_pu, loading_tol=opts.loading_tolerance_percent)

    # 1-2. screening and adequacy
    res0, _, disp0 = _solve(_served_case(case, loads, None))
    pre = screen(case, res0, base, **scr)
    capacity = online_capacity_mw(case)
    load_mw = float(loads.total_p.sum())
    losses = float(res0.summary()["losses_mw"]) if res0.converged else 0.025 * load_mw
    shortfall = load_mw + losses + opts.reserve_mw - capacity
    drivers = []
    if shortfall > 0:
        drivers.append("capacity")

    # 3. collapse: hosting limit of the datacenters
    hosting = None
    if not pre.converged:
        drivers.append("collapse")
        hosting = _hosting_limit(case, loads, dcl, solvable_mw)
        notes.append(f"the datacenters' hosting limit is {hosting:.0f} MW (voltage collapse above it)")

    if policy == "network":
        # 4'. one linear program for the shortfall and the network, re-linearized until clean; far from
        # the limits the DC sensitivities can mislead, and if the rounds end unclean the deliverability
        # route of the other policies is taken (with the shortfall left covered by the LP)
        a = _empty(nb, policy, max(shortfall, 0.0))
        if shortfall > 0:
            a = alloc.allocate_network(_problem(loads, zones, crit_mask, shortfall), H=np.zeros((0, nb)),
                                       flow0_mw=np.zeros(0), limit_mw=np.zeros(0))
        a, res, extra = _network_rounds(case, loads, zones, crit_mask, base, a, local, dcl, hosting, scr)
        drivers += extra
        if res is None or not screen(case, res, base, **scr).clean:
            b, res_b, extra_b = _local_bisection(case, loads, zones, crit_mask, base, _empty(nb, policy), local,
                                                 "large-load-first", scr, hosting)
            losses_b = float(res_b.summary()["losses_mw"]) if res_b is not None and res_b.converged else losses
            left = load_mw - b.total_mw + losses_b + opts.reserve_mw - capacity
            if left > 0:
                b = _add(b, alloc.allocate_network(_problem(_remaining(loads, b), zones, crit_mask, left),
                                                   H=np.zeros((0, nb)), flow0_mw=np.zeros(0),
                                                   limit_mw=np.zeros(0)), "capacity")
                res_b, _, _ = _solve(_served_case(case, loads, b), search=True)
            clean_b = res_b is not None and screen(case, res_b, base, **scr).clean
            if clean_b:
                a, res = b, res_b
                drivers += extra_b
                notes.append("network policy: the linear program did not reach a clean AC solution; the "
                             "datacenters behind the limits were curtailed instead")
    else:
        # 4. deliverability: what the network cannot carry to the new load is not served; the relief
        # comes from the datacenters behind it (flexible share, then backup), then from firm load there
        a, res, extra = _local_bisection(case, loads, zones, crit_mask, base, _empty(nb, policy), local,
                                         "large-load-first", scr, hosting)
        drivers = [d for d in drivers if d != "capacity"] + extra
        # 5. adequacy of what is left: the capacity shortfall, shared by the policy over all zones
        losses_left = float(res.summary()["losses_mw"]) if res is not None and res.converged else losses
        left = load_mw - a.total_mw + losses_left + opts.reserve_mw - capacity
        if shortfall > 0:
            notes.append(f"capacity shortfall {shortfall:,.0f} MW before shed, {max(left, 0):,.0f} MW once the "
                         "load the network cannot deliver is off")
        if left > 0:
            drivers.insert(0, "capacity")
            cap = _policy_fn(policy)(_problem(_remaining(loads, a), zones, crit_mask, left,
                                              ratio=opts.zone_ratio or None))
            if cap.unmet_mw > 1e-6:
                notes.append(f"{cap.unmet_mw:.0f} MW of the capacity shortfall cannot be shed (critical load)")
            a = _add(a, cap, "capacity")
            res, _, _ = _solve(_served_case(case, loads, a), search=True)
    if res is not None and not screen(case, res, base, **scr).clean:
        notes.append("the allocation leaves problems in the AC solution: " + screen(case, res, base, **scr).describe())
    driver = "+".join(dict.fromkeys(drivers)) or "none"

    # 6. rotation of each zone's firm obligation
    T = int(round(opts.hours * 60 / opts.interval_minutes))
    firm_by_zone = pd.Series(a.p_firm_mw).groupby(zones.zone).sum()
    firm_by_zone = firm_by_zone[firm_by_zone > 1e-6]
    blocks = feeder_blocks(case, zones, loads, a, crit_mask, opts.feeder_mw, policy)
    blocks = blocks[blocks["zone"].isin(firm_by_zone.index)]
    obligations = {z: np.full(T, float(v)) for z, v in firm_by_zone.items()}
    if obligations:
        schedule, block_stats, zone_stats = rotate_zones(blocks, obligations, interval_minutes=opts.interval_minutes,
                                                         max_hours_dark=opts.max_hours_dark)
    else:
        schedule = pd.DataFrame(columns=["interval", "block", "zone", "dark"])
        block_stats = pd.DataFrame(columns=["zone", "block", "mw", "intervals_dark", "hours_dark",
                                            "longest_outage_hours"])
        zone_stats = pd.DataFrame(columns=["zone", "obligation_mw_max", "shed_mw_max", "blocks", "hours_dark_max",
                                           "oe417"])

    # 7. AC verification of every interval
    intervals, rows_shed, rows_demand, rows_gen = [], [], [], []
    bus_of_block = blocks.set_index("block")["bus_index"] if len(blocks) else pd.Series(dtype=np.int64)
    mw_of_block = blocks.set_index("block")["mw"] if len(blocks) else pd.Series(dtype=float)
    vm_after = None
    for t in range(T):
        dark = np.zeros(nb)  # MW of firm load dark at each bus
        if len(schedule):
            d = schedule[(schedule["interval"] == t) & schedule["dark"].astype(bool)]["block"].to_numpy()
            np.add.at(dark, bus_of_block[d].to_numpy(), mw_of_block[d].to_numpy())
        served = _served_case(case, loads, a, dark)
        r, dispatched, _ = _solve(served)
        s = screen(case, r, base, **scr)
        intervals.append(s)
        if vm_after is None and r.converged:
            vm_after = r.bus["vm_pu"].to_numpy()
        rows_shed.append(_shed_rows(t, case, loads, a, dark))
        has = served.bus.pd > 0
        rows_demand.append(pd.DataFrame({"interval": t, "bus": case.bus.number[has],
                                         "p_mw": served.bus.pd[has] * case.base_mva,
                                         "q_mvar": served.bus.qd[has] * case.base_mva}))
        pg = r.gen["p_mw"].to_numpy() if r.converged else dispatched.gen.pg * case.base_mva
        rows_gen.append(pd.DataFrame({"interval": t, "gen": np.arange(case.ng), "p_mw": np.where(
            dispatched.gen.status, pg, 0.0)}))
    verified = all(s.clean for s in intervals)
    if not verified:
        bad = [f"interval {t}: {s.describe()}" for t, s in enumerate(intervals) if not s.clean]
        notes.append("AC verification failed: " + "; ".join(bad[:4]))
    return StepResult(
        datacenter_mw=float(total_mw), policy=policy, capacity_mw=capacity, load_mw=load_mw, losses_mw=losses,
        reserve_mw=opts.reserve_mw, shortfall_mw=float(shortfall), hosting_limit_mw=hosting, pre=pre,
        driver=driver, allocation=a, zones=_zone_table(case, zones, loads, a, zone_stats, block_stats),
        schedule=schedule, block_stats=block_stats, zone_stats=zone_stats, intervals=intervals, verified=verified,
        shed_by_bus=pd.concat(rows_shed, ignore_index=True), bus_demand=pd.concat(rows_demand, ignore_index=True),
        gen_dispatch=pd.concat(rows_gen, ignore_index=True), vm_after=vm_after, notes=notes)


def feeder_blocks(case, zones, loads, a, crit_mask, feeder_mw, policy) -> pd.DataFrame:
    """Rotation blocks: each load bus's firm load cut into feeders of ``feeder_mw`` (the last one
    smaller), listed round-robin over the buses (first feeder of every bus, then the second...) so
    that a rotation spreads over the zone instead of darkening whole substations.

    Buses taking part: every non-critical bus with firm load, except under the ``network`` policy,
    where only the buses the linear program chose for firm shed rotate.
    """
    take = (loads.firm_p > 1e-9) & ~crit_mask
    if policy == "network":
        take &= a.p_firm_mw > 1e-6
    rows = []
    for i in np.flatnonzero(take):
        mw = loads.firm_p[i]
        n_full = int(mw // feeder_mw)
        sizes = [feeder_mw] * n_full + ([mw - n_full * feeder_mw] if mw - n_full * feeder_mw > 1e-6 else [])
        for k, size in enumerate(sizes):
            rows.append((k, str(zones.zone[i]), f"{case.bus.number[i]}-{k + 1}", int(case.bus.number[i]), i, size))
    df = pd.DataFrame(rows, columns=["k", "zone", "block", "bus", "bus_index", "mw"])
    return df.sort_values(["k", "bus"], kind="stable").drop(columns="k").reset_index(drop=True)


def _shed_rows(t, case, loads, a, dark) -> pd.DataFrame:
    parts = []
    firm_p = dark
    firm_q = np.divide(dark, loads.firm_p, out=np.zeros_like(dark), where=loads.firm_p > 0) * loads.firm_q
    for kind, p, q in (("flexible", a.p_flex_mw, a.q_flex_mvar), ("backup", a.p_backup_mw, a.q_backup_mvar),
                       ("firm", firm_p, firm_q)):
        m = p > 1e-9
        parts.append(pd.DataFrame({"interval": t, "bus": case.bus.number[m], "p_shed_mw": p[m],
                                   "q_shed_mvar": q[m], "kind": kind}))
    return pd.concat(parts, ignore_index=True)


def _zone_table(case, zones, loads, a, zone_stats, block_stats) -> pd.DataFrame:
    df = pd.DataFrame({"zone": zones.zone, "state": zones.state, "rto": zones.rto,
                       "load_mw": loads.firm_p, "datacenter_mw": loads.dc_p,
                       "shed_flexible_mw": a.p_flex_mw, "shed_backup_mw": a.p_backup_mw, "shed_firm_mw": a.p_firm_mw})
    g = df.groupby("zone", sort=False).agg(state=("state", "first"), rto=("rto", "first"), load_mw=("load_mw", "sum"),
                                           datacenter_mw=("datacenter_mw", "sum"),
                                           shed_flexible_mw=("shed_flexible_mw", "sum"),
                                           shed_backup_mw=("shed_backup_mw", "sum"),
                                           shed_firm_mw=("shed_firm_mw", "sum"))
    g["shed_mw"] = g["shed_flexible_mw"] + g["shed_backup_mw"] + g["shed_firm_mw"]
    demand = g["load_mw"] + g["datacenter_mw"]
    g["shed_percent"] = np.where(demand > 0, g["shed_mw"] / demand.where(demand > 0, 1) * 100.0, 0.0)
    hours = zone_stats.set_index("zone")["hours_dark_max"] if len(zone_stats) else pd.Series(dtype=float)
    g["hours_dark_max"] = hours.reindex(g.index).fillna(0.0)
    g["oe417"] = g["shed_mw"] >= 100.0
    return g.reset_index().sort_values(["shed_mw", "load_mw"], ascending=False).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- searches

def _hosting_limit(case, loads, dcl, lo: float = 0.0) -> float:
    """Largest total datacenter MW (same sites, same shares) that still solves, MW;
    ``lo``: a total already known to solve."""
    hi = float(dcl.total_mw)
    scale = np.where(dcl.p_mw > 0, 1.0, 0.0)
    while hi - lo > max(BISECT_MW, 0.01 * hi):
        mid = 0.5 * (lo + hi)
        k = mid / dcl.total_mw
        trial = Loads(loads.firm_p, loads.firm_q, loads.dc_p * (1 - scale + scale * k), loads.dc_q * k, loads.flex * k)
        res, _, _ = _solve(_served_case(case, trial, None), search=True)
        lo, hi = (mid, hi) if res.converged else (lo, mid)
    return lo


def _local_bisection(case, loads, zones, crit_mask, base, a, local, policy, scr, hosting):
    """Extra MW shed inside the datacenters' zones (shared by ``policy``) until the AC solution is clean.

    The search brackets the answer between the collapse requirement (datacenter MW above the hosting
    limit) and the local datacenter MW (shedding that much returns the zones' net demand to the base
    case's, so the generators return to their base dispatch); only if that is not clean does it go on
    to all sheddable load there. If nothing tried is clean, the least bad trial is kept and reported.
    """
    rest = _remaining(loads, a)
    fn = _policy_fn(policy)
    sheddable = float(np.where(local & ~crit_mask, rest.total_p, 0.0).sum())
    dc_local = float(np.where(local, rest.dc_p, 0.0).sum())

    def trial(x):
        if x <= 0:
            extra = _empty(case.nb, policy)
        else:
            extra = fn(_problem(rest, zones, crit_mask, x, only=local))
        tot = _add(a, extra, a.driver)
        res, _, _ = _solve(_served_case(case, loads, tot), search=True)
        return tot, res, screen(case, res, base, **scr)

    def badness(s: Screen):
        return (0 if s.converged else 1, len(s.new_overloads) + len(s.worsened_overloads) + len(s.new_voltage))

    tried = [trial(0.0)]
    if tried[0][2].clean:
        return tried[0][0], tried[0][1], []
    drivers = _drivers(tried[0][2])
    lo = 0.0 if hosting is None else max(0.0, float(loads.dc_p.sum()) - hosting)
    best = None
    for hi in dict.fromkeys(x for x in (min(dc_local, sheddable), sheddable) if x > lo):
        cand = trial(hi)
        tried.append(cand)
        if cand[2].clean:
            best = cand
            break
    if best is None:
        worst_first = min(tried, key=lambda t: badness(t[2]))
        return worst_first[0], worst_first[1], drivers
    while hi - lo > max(BISECT_MW, 0.005 * hi):
        mid = 0.5 * (lo + hi)
        cand = trial(mid)
        if cand[2].clean:
            hi, best = mid, cand
        else:
            lo = mid
            if cand[2].converged:
                drivers += _drivers(cand[2])
    return best[0], best[1], drivers


def _drivers(s: Screen) -> list:
    if not s.converged:
        return ["collapse"]
    out = []
    if len(s.new_overloads) or len(s.worsened_overloads):
        out.append("overload")
    if len(s.new_voltage):
        out.append("voltage")
    return out


def _network_rounds(case, loads, zones, crit_mask, base, a, local, dcl, hosting, scr):
    """LP around the AC solution, re-linearized until clean (then a local datacenter-first bisection
    for what the DC sensitivities cannot see, e.g. voltage)."""
    from gridflow.study.sensitivity import shed_sensitivity

    drivers = []
    if hosting is not None:  # get to a solvable point first: the datacenters above the limit go (cheapest)
        need = float(loads.dc_p.sum()) - hosting
        first = alloc.allocate_large_load_first(_problem(_remaining(loads, a), zones, crit_mask, need, only=local))
        a = _add(a, first, a.driver)
    monitored = np.zeros(0, np.int64)
    res = None
    for _ in range(NETWORK_ROUNDS):
        served = _served_case(case, loads, a)
        res, dispatched, _ = _solve(served, search=True)
        s = screen(case, res, base, **scr)
        if s.clean or not s.converged:
            break
        drivers += _drivers(s)
        if not len(s.problem_branches):
            break
        monitored = np.union1d(monitored, s.problem_branches)
        H = shed_sensitivity(dispatched, monitored)
        br = res.branch
        flow0 = br["p_from_mw"].to_numpy()[monitored]
        rate = rating_mva(case, base.rating)[monitored]
        was = np.nan_to_num(base.loading[monitored])
        # allowed MVA: the rating, or the base loading for pre-existing overloads; P limit from S and Q
        smax = np.where(was > 100.0, rate * was / 100.0, rate) * 0.995
        limit = smax  # P limit: the MVA rating (Q is mostly local; the AC check catches the rest)
        step = alloc.allocate_network(_problem(_remaining(loads, a), zones, crit_mask, 0.0), H=H, flow0_mw=flow0,
                                      limit_mw=limit)
        log.info("network round: %d monitored branches, shed %.0f MW (flexible %.0f, backup %.0f, firm %.0f), "
                 "violation left %.1f MW", len(monitored), step.total_mw, step.p_flex_mw.sum(),
                 step.p_backup_mw.sum(), step.p_firm_mw.sum(), step.max_violation_mw)
        if step.total_mw <= 1e-6:
            break
        a = _add(a, step, a.driver)
    return a, res, drivers


