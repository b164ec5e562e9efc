"""The study: datacenters on a footprint's peak day, the network's limits, the ladder, rolling blackouts.

Set-up (:func:`prepare`, once): the case, the zone map, the **footprint**
(:mod:`.footprint`: the RTO whose units respond and whose load may be shed), the
**day** (:mod:`.loadshape`: the hours studied in intervals, the footprint's firm
load by the hour's multiplier), the zones' prior-peak **shares**, the **blocks**
that may rotate (:mod:`.blocks`), and one AC **reference** per interval: the hour
without any datacenter, the footprint's units balancing it (Q limits on).

For every step (the datacenters scaled to a total):

1. **Placement** (:mod:`.datacenters`), said aloud.
2. **Limits** (:mod:`.search`): at the interval with the most firm load, each
   datacenter in queue order (the earlier ones at their limits) is bisected for
   the most MW the network takes with no attributed violation
   (:mod:`.screening`); the trial above names the binding constraint. What is
   above the limit is *not deliverable*: it is not served in any interval. (If
   the footprint's units cannot carry a trial's load and reserve, the firm load
   of the footprint is lowered in proportion until they can: deliverability is
   tested with the footprint in balance, as the ladder will keep it.)
3. **Adequacy** per interval: shortfall = footprint firm load + datacenters
   served + overhead + reserve - online capacity, where the *overhead* is what
   the footprint's units produce beyond its own demand: its fixed net export and
   the losses (the reference's, plus the loss change the limit search saw at the
   peak, scaled by the datacenter MW served); re-estimated from the verified
   solutions (at most ``LOSS_ROUNDS`` rounds) when off by more than
   ``LOSS_TOL_MW``.
4. **Ladder** (:mod:`.ladder`, in the policy's order, :mod:`.policy`).
5. **Obligations**: firm shed x each zone's prior-peak share; **rotation** of
   each zone's blocks (:mod:`.rotation`: the cap is hard, what the blocks cannot
   give is reported as unserved MW).
6. **Verification** (:mod:`.verify`): every interval solved in AC with the
   footprint's units responding and Q limits on, screened against its reference:
   no attributed violation, no generator outside its P or Q limits, and the
   footprint's reserve kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from gridflow.case import Case
from gridflow.errors import ScenarioError
from gridflow.io import load_case
from gridflow.study import blocks as blk
from gridflow.study.acsolve import OperatingPoint, solve_point, solve_points
from gridflow.study.datacenters import Placement, place_one, scale
from gridflow.study.demand import State, held_dispatch
from gridflow.study.footprint import Footprint, derate, footprint_of, reference_bus
from gridflow.study.ladder import Climb, Rung, climb
from gridflow.study.loadshape import Day, bus_shapes, study_day
from gridflow.study.n1 import ContingencySet, N1Judge, study_contingencies
from gridflow.study.policy import DatacenterRungs, Policy, get_policy
from gridflow.study.rotation import OE417_THRESHOLD_MW, rotate_zones
from gridflow.study.scenario import Scenario
from gridflow.study.screening import Monitor, Reference, Screen, monitor_for, reference, screen
from gridflow.study.search import LimitSearch, Trial, bisect_limit, site_min_vm, with_stability_margin
from gridflow.study.verify import IntervalCheck, Verification, verify_day
from gridflow.study.zones import ZoneMap, load_zone_map, zone_shares

log = logging.getLogger(__name__)

#: re-estimate the overhead (net export + losses) when the verified one differs by more than this, MW
LOSS_TOL_MW = 50.0
LOSS_ROUNDS = 2
#: rounds in which intervals the network cannot carry as planned get their datacenter MW lowered
NETWORK_ROUNDS = 2
#: MW the footprint's units may be over (capacity - reserve) in a balanced search state
BALANCE_TOL_MW = 5.0
#: a limit-search point that does not solve from the nearest solution is approached through at most this
#: many midpoints before it counts as beyond the nose
CONTINUATION_STEPS = 2

Progress = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


# ----------------------------------------------------------------------------------------------------- set-up

@dataclass(frozen=True)
class Setup:
    """Everything the steps share. Arrays: (nb,) buses, (T, nb) intervals x buses."""

    scenario: Scenario
    case: Case
    zones: ZoneMap
    footprint: Footprint
    policy: Policy
    day: Day
    multiplier: np.ndarray  # (T, nb) firm-load multiplier of each interval (1 outside the footprint)
    shares: pd.Series  # footprint zone -> prior-peak share
    rotatable_mw: np.ndarray  # (nb,) at the base case
    blocks: pd.DataFrame  # blk.BLOCK_COLUMNS, every footprint zone
    placements: tuple[Placement, ...]
    monitor: Monitor
    base: OperatingPoint  # the base case, footprint units balancing, Q limits as the scenario says
    references: tuple[OperatingPoint, ...]  # (T) the hours without datacenters
    ref_tables: tuple[Reference, ...]  # (T)
    peak: int  # the interval with the most footprint firm load
    reference_bus: int | None = None  # bus index the angle reference was moved to (None: the case's own)
    n1: N1Judge | None = None  # N-1 (None: contingencies = "none")
    contingencies: ContingencySet | None = None

    @property
    def opts(self):
        return self.scenario.study

    @property
    def dt_h(self) -> float:
        return self.day.interval_minutes / 60.0

    @property
    def firm_p0_mw(self) -> np.ndarray:
        return self.case.bus.pd * self.case.base_mva

    @property
    def firm_q0_mvar(self) -> np.ndarray:
        return self.case.bus.qd * self.case.base_mva

    def firm_mw(self, t: int) -> np.ndarray:
        return self.firm_p0_mw * self.multiplier[t]

    def footprint_firm_mw(self) -> np.ndarray:
        """(T,) footprint firm load per interval, MW."""
        return (self.multiplier * self.firm_p0_mw)[:, self.footprint.bus].sum(axis=1)

    def solve(self, state: State, *, warm: OperatingPoint | None = None, search: bool = False,
              losses_mw=None) -> OperatingPoint:
        return solve_point(state.case(self.case), responders=self.footprint.gen, q_limits=self.opts.q_limits,
                           warm=warm, search=search, losses_mw=losses_mw)

    def screen(self, pt: OperatingPoint, ref: Reference, served_mw: float, monitor: Monitor | None = None) -> Screen:
        return screen(self.case, pt.result, ref, monitor or self.monitor, served_mw, self.zones.zone, pt.case)

    def footprint_pg_mw(self, pt: OperatingPoint) -> float:
        """The footprint units' output in a solved point, MW."""
        return float(pt.result.gen["p_mw"].to_numpy()[self.footprint.gen].sum())


def prepare(scenario: Scenario, *, case: Case | None = None, progress: Progress = _quiet) -> Setup:
    """Read the case, check everything the scenario says against it (one-line errors), solve the references."""
    opts = scenario.study
    policy = get_policy(opts.policy)
    case = case if case is not None else load_case(scenario.source)
    zones = load_zone_map(scenario.zones, case)
    if not scenario.datacenters:
        raise ScenarioError("the scenario has no [[datacenter]]")
    placements = tuple(place_one(dc, case, zones) for dc in scenario.datacenters)
    dc_buses = np.unique(np.concatenate([p.bus for p in placements]))
    fp = footprint_of(opts.footprint, case, zones, dc_buses)
    case, fp = derate(case, fp, opts.unavailable_mw)
    outside = [p.datacenter.name for p in placements if not fp.bus[p.bus].all()]
    if outside:
        raise ScenarioError(f"datacenter {outside[0]!r} is not (all) in footprint {fp.name!r}")
    if "emergency_rating" in opts.given:
        r = {"B": case.branch.rate_b, "C": case.branch.rate_c}[opts.emergency_rating]
        if not (r > 0).any():
            raise ScenarioError(f"emergency_rating = {opts.emergency_rating!r}: {case.name} has no rate "
                                f"{opts.emergency_rating} on any branch (all 0)")
    shares = zone_shares(opts.zone_shares, scenario.zones, fp.zones, case=case, zones=zones, resolve=scenario.resolve)
    if opts.hosting_map and opts.hosting_buses:  # checked now, not after the steps have run
        try:
            case.bus_index(list(opts.hosting_buses))
        except Exception as e:
            raise ScenarioError(f"hosting_buses: {e}") from None
    crit_bus = np.zeros(case.nb, bool)
    if opts.critical_buses:
        try:
            crit_bus[case.bus_index(list(opts.critical_buses))] = True
        except Exception as e:
            raise ScenarioError(f"critical_buses: {e}") from None
    rot = blk.rotatable_mw(case, zones, fp.bus, fp.zones, critical_percent=opts.critical_percent,
                           ufls_percent=opts.ufls_percent, critical_buses=crit_bus)
    blk.check_blocks(rot, zones.zone, fp.zones, opts.block_mw)
    blocks = blk.feeder_blocks(case, zones, rot, opts.block_mw)
    hourly = bus_shapes(opts.load_shape, zones.zone, fp.bus, fp.zones)
    firm0 = case.bus.pd * case.base_mva
    day = study_day(opts.hours, opts.interval_minutes, hourly[:, fp.bus] @ firm0[fp.bus])
    for dc in scenario.datacenters:
        if dc.load_shape is not None and not any(dc.load_shape):
            raise ScenarioError(f"datacenter {dc.name!r}: its load_shape is all zeros")
    mult = hourly[day.hour]
    local = np.isin(zones.zone, sorted(set(zones.zone[dc_buses])))
    monitor = monitor_for(case, rating=opts.rating, footprint_bus=fp.bus, local_bus=local,
                          monitored_kv_min=opts.monitored_kv_min, dfax_cutoff_percent=opts.dfax_cutoff_percent,
                          loading_tolerance_percent=opts.loading_tolerance_percent,
                          voltage_tolerance_pu=opts.voltage_tolerance_pu)
    held = held_dispatch(case, fp.gen)
    base = solve_point(case, responders=fp.gen, q_limits=opts.q_limits)
    new_ref = None
    if base.converged:
        case, new_ref = reference_bus(case, fp, base.result.gen["q_mvar"].to_numpy(), base.q_held.held)
        if new_ref is not None:
            base = solve_point(case, responders=fp.gen, q_limits=opts.q_limits, V0=base.V)
    progress(f"{scenario.name}: {case.name} ({case.nb:,} buses); {fp.describe()}; {day.T} intervals of "
             f"{day.interval_minutes} min from {day.label(0)}"
             + (f"; angle reference moved to bus {int(case.bus.number[new_ref])} (the footprint's most Q margin)"
                if new_ref is not None else ""))
    if not base.converged:
        raise ScenarioError(f"the base case {case.name} does not solve with the footprint's units balancing it"
                            f"{' and Q limits on' if opts.q_limits else ''}: {base.result.message}")
    refs = solve_points(case, firm0 * mult, case.bus.qd * case.base_mva * mult, responders=fp.gen,
                        q_limits=opts.q_limits, warm=base, pg_mw=np.repeat(held[None, :], day.T, axis=0))
    for t, pt in enumerate(refs):
        if not pt.converged:
            raise ScenarioError(f"the hour {day.label(t)} without datacenters does not solve: {pt.result.message}")
    progress(f"  references: {day.T} intervals solved (Q limits {'on' if opts.q_limits else 'OFF'})")
    fp_firm = (mult * firm0)[:, fp.bus].sum(axis=1)
    cset = study_contingencies(opts.contingencies, case, zones.zone, sorted(set(zones.zone[dc_buses])),
                               opts.contingency_kv_min, scenario.resolve)
    judge = None
    if cset is not None:
        monitor_n1 = monitor_for(case, rating=opts.emergency_rating, footprint_bus=fp.bus, local_bus=local,
                                 monitored_kv_min=opts.monitored_kv_min, dfax_cutoff_percent=opts.dfax_cutoff_percent,
                                 loading_tolerance_percent=opts.loading_tolerance_percent,
                                 voltage_tolerance_pu=opts.voltage_tolerance_pu)
        near = np.zeros(case.nb, bool)
        near[dc_buses] = True
        br = case.branch
        on = br.status
        near[br.t[on & near[br.f]]] = True
        near[br.f[on & near[br.t]]] = True
        judge = N1Judge(case, cset, monitor_n1, fp.gen, zones.zone, opts.q_limits, near, local)
        counts = judge.counts
        progress(f"  N-1: {cset.source}; post-contingency rating {opts.emergency_rating}"
                 + (f" ({counts['fallback']:,} branches without it judged on rate A)" if counts["fallback"] else "")
                 + f"; {counts['unrated']:,} branches unrated, not monitored")
    return Setup(scenario=scenario, case=case, zones=zones, footprint=fp, policy=policy, day=day, multiplier=mult,
                 shares=shares, rotatable_mw=rot, blocks=blocks, placements=placements, monitor=monitor, base=base,
                 references=tuple(refs), ref_tables=tuple(reference(case, r.result, opts.rating) for r in refs),
                 peak=int(np.argmax(fp_firm)), reference_bus=new_ref, n1=judge, contingencies=cset)


# ----------------------------------------------------------------------------------------------------- limits

@dataclass(frozen=True)
class DatacenterLimit:
    """One datacenter's N-0 limit in one step."""

    placement: Placement
    requested_mw: float  # at the search's interval
    search: LimitSearch
    reference: OperatingPoint  # the state it was judged against (the earlier datacenters at their limits)
    reference_table: Reference
    earlier_mw: tuple[float, ...] = ()  # every datacenter's MW in that reference (0 from this one on)
    n1: LimitSearch | None = None  # the N-1 search below the N-0 limit (None: N-0 only)

    @property
    def name(self) -> str:
        return self.placement.datacenter.name

    @property
    def deliverable_mw_n0(self) -> float:
        return self.search.limit_mw

    @property
    def deliverable_mw_n1(self) -> float | None:
        return None if self.n1 is None else self.n1.limit_mw

    @property
    def deliverable_mw(self) -> float:
        """The lesser of the N-0 and the N-1 limit."""
        return self.search.limit_mw if self.n1 is None else min(self.search.limit_mw, self.n1.limit_mw)

    @property
    def binding_search(self) -> LimitSearch:
        """The search whose limit binds (N-1 when it is below the N-0 limit)."""
        if self.n1 is not None and self.n1.limited and self.n1.limit_mw < self.search.limit_mw + 1e-6:
            return self.n1
        return self.search

    @property
    def limited(self) -> bool:
        return self.binding_search.limited

    @property
    def binding(self) -> str:
        return self.binding_search.binding()


def _dc_arrays(setup: Setup, mw_by_dc) -> tuple[np.ndarray, np.ndarray]:
    nb = setup.case.nb
    p, q = np.zeros(nb), np.zeros(nb)
    for pl, mw in zip(setup.placements, mw_by_dc, strict=True):
        pi = pl.p_mw(nb, mw)
        p += pi
        q += pi * np.tan(np.arccos(pl.datacenter.power_factor))
    return p, q


def _balanced(setup: Setup, t: int, dc_p, dc_q, *, warm=None, search=True) -> OperatingPoint:
    """Solve interval t's firm load plus datacenters; if the footprint's units would run past capacity -
    reserve, lower the footprint's firm load in proportion until they do not (see step 2 above)."""
    fp = setup.footprint
    firm = setup.firm_mw(t)
    q0 = setup.firm_q0_mvar * setup.multiplier[t]
    held = held_dispatch(setup.case, fp.gen)
    room = fp.capacity_mw - setup.opts.reserve_mw
    k = 1.0
    pt = None
    for _ in range(3):
        st = State(firm * np.where(fp.bus, k, 1.0) + dc_p, q0 * np.where(fp.bus, k, 1.0) + dc_q, held)
        pt = setup.solve(st, warm=warm, search=search)
        if not pt.converged:
            return pt
        over = setup.footprint_pg_mw(pt) - room
        if over <= BALANCE_TOL_MW:
            return pt
        fp_firm = float(firm[fp.bus].sum()) * k
        k *= max(1.0 - (over + BALANCE_TOL_MW) / fp_firm, 0.0)
        warm = pt
    return pt


def limit_evaluator(setup: Setup, i: int, done, ref_pt: OperatingPoint, ref_tab: Reference, *,
                    monitor: Monitor | None = None, placements=None) -> Callable[[float], Trial]:
    """``evaluate(x)``: datacenter i at x MW (the others at ``done``, MW) at the peak interval, balanced,
    solved (warm-started from the nearest point solved before) and screened against ``ref_tab``."""
    su = setup if placements is None else replace(setup, placements=tuple(placements))
    pl = su.placements[i]
    warm = {0.0: ref_pt}
    # the P–V curve's voltage: the lowest bulk-system voltage in the datacenter's zone(s)
    zone_bus = np.flatnonzero(np.isin(su.zones.zone, su.zones.zone[pl.bus])
                              & (su.case.bus.base_kv >= su.opts.monitored_kv_min))
    pv_bus = zone_bus if len(zone_bus) else pl.bus

    def solve_at(x: float) -> OperatingPoint:
        if x in warm:  # solved before in this search (the N-1 search asks for the N-0 search's points again)
            return warm[x]
        mws = list(done)
        mws[i] = x
        dc_p, dc_q = _dc_arrays(su, mws)
        near = min(warm, key=lambda m: abs(m - x))
        pt = _balanced(su, su.peak, dc_p, dc_q, warm=warm[near])
        if pt.converged:
            warm[x] = pt
        return pt

    def evaluate(x: float) -> Trial:
        pt = solve_at(x)
        # a long jump from the nearest solution can fail short of the nose: approach in steps first
        below = [m for m in warm if m < x]
        for _ in range(CONTINUATION_STEPS):
            if pt.converged or not below:
                break
            lo = max(below)
            if x - lo <= setup.opts.limit_tolerance_mw:
                break
            mid = 0.5 * (lo + x)
            if not solve_at(mid).converged:
                break
            pt = solve_at(x)
            below = [m for m in warm if m < x]
        return Trial(mw=x, screen=su.screen(pt, ref_tab, x, monitor), vm_min_site_pu=site_min_vm(pt, pv_bus),
                     point=pt)

    evaluate.solve_at = solve_at  # the N-1 search reuses the N-0 points
    evaluate.pv_bus = pv_bus
    return evaluate


def n1_evaluator(setup: Setup, evaluate_n0, ref_pt: OperatingPoint, top_mw: float) -> Callable[[float], Trial]:
    """``evaluate(x)``: the N-0 point at x (solved once, shared with the N-0 search) judged after the
    contingencies screened at x (:meth:`N1Judge.screened`) against the same contingencies at ``ref_pt``; a trial
    stops at its first violation, ``evaluate.full(trial)`` judges it on every screened contingency (the trial a
    search reports). ``evaluate.screened``: how many the screen sent to AC at ``top_mw`` (the most MW tried)."""
    judge = setup.n1
    screened: dict = {}

    def ks_at(pt: OperatingPoint, x: float) -> np.ndarray:
        if x not in screened:
            screened[x] = judge.screened(pt, ref_pt, x)
        return screened[x]

    def evaluate(x: float) -> Trial:
        pt = evaluate_n0.solve_at(x)
        ks = ks_at(pt, x) if pt.converged else None
        return Trial(mw=x, screen=judge.judge(pt, ref_pt, x, ks=ks, first_only=True),
                     vm_min_site_pu=site_min_vm(pt, evaluate_n0.pv_bus), point=pt)

    def full(trial: Trial) -> Trial:
        if trial.point is None or not trial.point.converged:
            return trial
        return replace(trial, screen=judge.judge(trial.point, ref_pt, trial.mw, ks=ks_at(trial.point, trial.mw)))

    evaluate.full = full
    top = evaluate_n0.solve_at(top_mw)
    evaluate.screened = len(ks_at(top, top_mw)) if top.converged else 0
    return evaluate


def requested_at_peak(setup: Setup, i: int, mw: float) -> float:
    dc = setup.placements[i].datacenter
    hour = setup.day.hour[setup.peak]
    return float(mw) * (dc.load_shape[hour] if dc.load_shape is not None else 1.0)


def search_limits(setup: Setup, i: int, done, ref_pt: OperatingPoint, ref_tab: Reference, requested_mw: float, *,
                  hints_n0=(), hints_n1=(), on_n0=None) -> tuple[LimitSearch, LimitSearch | None, int]:
    """Datacenter i's N-0 limit (bisection up to ``requested_mw``, the voltage-stability margin at a collapse)
    and, with N-1 and room left, its N-1 limit at or below it (the failing trial judged on every screened
    contingency). ``on_n0(search)`` is called between the two. Returns (N-0 search, N-1 search or None,
    contingencies screened at the N-0 limit)."""
    tol = setup.opts.limit_tolerance_mw
    evaluate = limit_evaluator(setup, i, done, ref_pt, ref_tab)
    search = bisect_limit(evaluate, requested_mw, tol_mw=tol, hints=[h for h in hints_n0 if h])
    search = with_stability_margin(search, evaluate, setup.opts.voltage_stability_margin_percent, tol_mw=tol)
    if on_n0 is not None:
        on_n0(search)
    if setup.n1 is None or search.limit_mw <= 0:
        return search, None, 0
    ev1 = n1_evaluator(setup, evaluate, ref_pt, search.limit_mw)
    n1 = bisect_limit(ev1, search.limit_mw, tol_mw=tol, hints=[h for h in hints_n1 if h])
    if n1.above is not None:
        above = ev1.full(n1.above)
        n1 = replace(n1, above=above, trials=tuple(above if t is n1.above else t for t in n1.trials))
    return search, n1, ev1.screened


def find_limits(setup: Setup, mw_by_dc, *, hints=None, progress: Progress = _quiet) -> tuple[DatacenterLimit, ...]:
    """Each datacenter's limit at the peak interval, in queue order (see the module docstring)."""
    t = setup.peak
    done: list[float] = [0.0] * len(setup.placements)
    ref_pt, ref_tab = setup.references[t], setup.ref_tables[t]
    out = []
    for i, pl in enumerate(setup.placements):
        name = pl.datacenter.name
        req = requested_at_peak(setup, i, mw_by_dc[i])
        def n0_done(search, name=name, req=req):
            progress(f"    {name}: {req:,.0f} MW requested, {search.limit_mw:,.0f} MW deliverable N-0"
                     + (f" (binding: {search.binding()})" if search.limited else "")
                     + f" [{len(search.trials)} AC solves]")

        search, n1, screened = search_limits(setup, i, done, ref_pt, ref_tab, req, on_n0=n0_done,
                                             hints_n0=(hints or {}).get(name, ()),
                                             hints_n1=(hints or {}).get(f"{name} N-1", ()))
        if n1 is not None:
            progress(f"    {name}: {n1.limit_mw:,.0f} MW deliverable N-1"
                     + (f" (binding: {n1.binding()})" if n1.limited else "")
                     + f" [{len(n1.trials)} points; {screened:,} contingencies in AC, screened at "
                     f"{search.limit_mw:,.0f} MW]")
        lim = DatacenterLimit(placement=pl, requested_mw=req, search=search, reference=ref_pt,
                              reference_table=ref_tab, earlier_mw=tuple(done), n1=n1)
        out.append(lim)
        done[i] = lim.deliverable_mw
        at = lim.binding_search.at_limit
        if at is not None and at.point is not None:
            ref_pt = at.point
            ref_tab = reference(setup.case, ref_pt.result, setup.opts.rating)
    return tuple(out)


# ----------------------------------------------------------------------------------------------------- a step

@dataclass(frozen=True)
class Rotation:
    """Rolling blackouts of a step (:func:`gridflow.study.rotation.rotate_zones`) and the per-zone obligations."""

    schedule: pd.DataFrame  # interval, block, zone, dark (only zones with an obligation)
    block_stats: pd.DataFrame
    zone_stats: pd.DataFrame
    obligations_mw: pd.DataFrame  # (T, zones) MW
    relief_mw: pd.DataFrame  # (T, zones) MW the dark blocks give (net of cold-load pickup)
    unserved_mw: pd.DataFrame  # (T, zones) MW of the obligation the blocks could not give


@dataclass(frozen=True)
class Plan:
    """What each interval gets: the ladder and the rotation; per-datacenter MW (D, T)."""

    climb: Climb
    rotation: Rotation
    dc_served_mw: np.ndarray  # (D, T) deliverable part of each datacenter's request
    dc_drawn_mw: np.ndarray  # (D, T) what each draws from the grid after the ladder
    dc_p_mw: np.ndarray  # (T, nb) datacenter MW drawn at each bus
    dc_q_mvar: np.ndarray  # (T, nb)
    dc_shed_mw: dict  # kind -> (T, nb): not_deliverable, flexible, backup, curtailed
    dc_tan: np.ndarray  # (nb,) Q/P of the datacenter load at each bus
    dark_mw: np.ndarray  # (T, nb) firm MW dark
    pickup_mw: np.ndarray  # (T, nb) cold-load pickup
    reduction: np.ndarray  # (T,) fraction of footprint firm load off by demand response + voltage reduction
    import_mw: np.ndarray  # (T,)


@dataclass(frozen=True)
class StepResult:
    """One datacenter total under one policy."""

    datacenter_mw: float
    policy: str
    requested_mw: np.ndarray  # (D,) each datacenter's MW in this step
    limits: tuple[DatacenterLimit, ...]
    placements: tuple[str, ...]  # one line per datacenter
    footprint_firm_mw: np.ndarray  # (T,)
    dc_requested_mw: np.ndarray  # (D, T)
    overhead_mw: np.ndarray  # (T,) footprint output beyond its demand (net export + losses) the shortfall used
    plan: Plan
    verification: Verification
    hour_limits: dict = field(default_factory=dict)  # interval label -> LimitSearch where an hour carried less
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def verified(self) -> bool:
        return self.verification.verified

    @property
    def climb(self) -> Climb:
        return self.plan.climb

    @property
    def rotation(self) -> Rotation:
        return self.plan.rotation

    @property
    def firm_shed_mw(self) -> np.ndarray:
        """(T,) firm load dark (net of pickup), MW."""
        return self.plan.rotation.relief_mw.sum(axis=1).to_numpy()

    @property
    def unserved_mw(self) -> np.ndarray:
        return self.plan.rotation.unserved_mw.sum(axis=1).to_numpy()

    @property
    def oe417(self) -> bool:
        """Firm load shed of 100 MW or more in some interval (DOE OE-417; datacenter curtailment and backup do
        not count)."""
        return oe417(self.firm_shed_mw)


def oe417(firm_shed_mw) -> bool:
    """The one definition of reportable shed: firm load shed (datacenter curtailment and backup generation do
    not count) of at least 100 MW in some interval (DOE form OE-417)."""
    return bool(np.max(np.asarray(firm_shed_mw, float), initial=0.0) >= OE417_THRESHOLD_MW * (1 - 1e-12))


def _dc_groups(setup: Setup, mw_by_dc, served: np.ndarray, dt_h: float) -> tuple[list, list]:
    """Datacenter rungs: one group per datacenter and eligibility (sites >= large_load_min_mw under
    large-load-first). Returns (groups as (dc index, bus weights (k,), share of the datacenter), rungs)."""
    opts = setup.opts
    groups, rungs = [], []
    for i, pl in enumerate(setup.placements):
        dc = pl.datacenter
        site_mw = float(mw_by_dc[i]) * pl.weight
        parts = [(True, np.ones(len(pl.bus), bool))]
        if setup.policy.name == "large-load-first":
            big = site_mw >= opts.large_load_min_mw
            parts = [(True, big), (False, ~big)]
        for eligible, m in parts:
            share = float(pl.weight[m].sum())
            if share <= 0:
                continue
            s = served[i] * share
            g = len(groups)
            groups.append((i, np.where(m, pl.weight, 0.0) / share, share))
            flex, back = dc.flexible_share * s, dc.backup_share * s
            rungs.append(DatacenterRungs(
                eligible=eligible,
                flexible=Rung("dc_flexible", flex, flex.max(initial=0) * opts.max_curtail_hours, g),
                backup=Rung("dc_backup", back, back.max(initial=0) * opts.backup_max_hours, g),
                curtail=Rung("dc_curtailed", s - flex - back, None, g)))
    return groups, rungs


def plan_day(setup: Setup, mw_by_dc, requested: np.ndarray, served: np.ndarray, need: np.ndarray) -> Plan:
    """Ladder, obligations and rotation for the shortfall ``need`` (T,) with the datacenters' requested and
    deliverable MW ``requested``, ``served`` (D, T)."""
    opts, case = setup.opts, setup.case
    T = setup.day.T
    fp_firm = setup.footprint_firm_mw()
    common = [Rung("demand_response", np.full(T, opts.demand_response_mw)),
              Rung("voltage_reduction", fp_firm * opts.voltage_reduction_percent / 100.0),
              Rung("emergency_import", np.full(T, opts.emergency_import_mw))]
    groups, dc_rungs = _dc_groups(setup, mw_by_dc, served, setup.dt_h)
    c = climb(need, setup.policy.ladder(common, dc_rungs), setup.dt_h)
    nb = case.nb
    drawn = served.copy()
    shed = {k: np.zeros((T, nb)) for k in ("not_deliverable", "flexible", "backup", "curtailed")}
    dc_p, dc_q, tan_w = np.zeros((T, nb)), np.zeros((T, nb)), np.zeros(nb)
    for i, pl in enumerate(setup.placements):
        tan = np.tan(np.arccos(pl.datacenter.power_factor))
        w = pl.p_mw(nb, 1.0)
        shed["not_deliverable"] += np.outer(requested[i] - served[i], w)
        dc_p += np.outer(served[i], w)
        dc_q += np.outer(served[i], w) * tan
        tan_w += w * tan * float(mw_by_dc[i])
    for g, (i, weight, _) in enumerate(groups):
        pl = setup.placements[i]
        tan = np.tan(np.arccos(pl.datacenter.power_factor))
        wg = np.zeros(nb)
        np.add.at(wg, pl.bus, weight)
        for kind, name in (("dc_flexible", "flexible"), ("dc_backup", "backup"), ("dc_curtailed", "curtailed")):
            mw = c.by_kind(kind, g)
            drawn[i] -= mw
            shed[name] += np.outer(mw, wg)
            dc_p -= np.outer(mw, wg)
            dc_q -= np.outer(mw, wg) * tan
    drawn = np.maximum(drawn, 0.0)
    dc_p = np.maximum(dc_p, 0.0)
    dc_q = np.maximum(dc_q, 0.0)
    total_w = sum(pl.p_mw(nb, float(mw)) for pl, mw in zip(setup.placements, mw_by_dc, strict=True))
    dc_tan = np.divide(tan_w, total_w, out=np.zeros(nb), where=total_w > 0)
    reduction = np.divide(c.by_kind("demand_response") + c.by_kind("voltage_reduction"), fp_firm,
                          out=np.zeros(T), where=fp_firm > 0)
    rot, dark, pickup = _rotate(setup, c.firm_mw, reduction)
    return Plan(climb=c, rotation=rot, dc_served_mw=served, dc_drawn_mw=drawn, dc_p_mw=dc_p, dc_q_mvar=dc_q,
                dc_shed_mw=shed, dc_tan=dc_tan, dark_mw=dark, pickup_mw=pickup, reduction=reduction,
                import_mw=c.by_kind("emergency_import"))


def _rotate(setup: Setup, firm_mw: np.ndarray, reduction: np.ndarray):
    """Zone obligations (firm MW x share) rotated over each zone's blocks, in the blocks' base-case MW
    (a zone's blocks all scale by its hour's multiplier x (1 - demand response and voltage reduction))."""
    opts, case = setup.opts, setup.case
    T, nb = setup.day.T, case.nb
    labels = setup.day.labels
    zones = list(setup.shares.index)
    obligations = pd.DataFrame(np.outer(firm_mw, setup.shares.to_numpy()), index=labels, columns=zones)
    zone_bus = {z: np.flatnonzero(setup.footprint.bus & (setup.zones.zone == z)) for z in zones}
    scale = pd.DataFrame({z: setup.multiplier[:, zone_bus[z][0]] * (1.0 - reduction) for z in zones}, index=labels)
    active = [z for z in zones if obligations[z].max() > 1e-6]
    relief = pd.DataFrame(0.0, index=labels, columns=zones)
    unserved = pd.DataFrame(0.0, index=labels, columns=zones)
    dark = np.zeros((T, nb))
    pickup = np.zeros((T, nb))
    if not active:
        empty = pd.DataFrame(columns=["interval", "block", "zone", "dark"])
        bstats = pd.DataFrame(columns=["zone", "block", "mw", "intervals_dark", "hours_dark", "longest_outage_hours",
                                       "cap_violations"])
        zstats = pd.DataFrame(columns=["zone", "obligation_mw_max", "shed_mw_max", "blocks", "hours_dark_max", "oe417",
                                       "shortfall_mw_max", "overshoot_mw_max", "longest_outage_hours_max",
                                       "cap_violations", "minutes_dark_max", "minutes_dark_mean", "pickup_mw_max"])
        return Rotation(empty, bstats, zstats, obligations, relief, unserved), dark, pickup
    b = setup.blocks[setup.blocks["zone"].isin(active)]
    need = {z: (obligations[z] / scale[z]).to_numpy() for z in active}
    sched, bstats, zstats = rotate_zones(b[["zone", "block", "mw"]], need, interval_minutes=opts.interval_minutes,
                                         max_hours_dark=opts.max_hours_dark, on_cap_conflict="shortfall",
                                         cold_load_pickup_percent=opts.cold_load_pickup_percent)
    sched["interval"] = np.asarray(labels, dtype=object)[sched["interval"].to_numpy()]
    # dark MW and pickup per bus and interval, in real MW
    for z in active:
        zb = b[b["zone"] == z]
        rows = sched[sched["zone"] == z]
        d = rows["dark"].to_numpy().reshape(T, len(zb))
        mw = zb["mw"].to_numpy()
        bus = zb["bus_index"].to_numpy()
        s = scale[z].to_numpy()[:, None]
        prev = np.vstack([np.zeros((1, len(zb)), bool), d[:-1]])
        back = prev & ~d
        for t in range(T):
            np.add.at(dark[t], bus[d[t]], mw[d[t]] * s[t, 0])
            np.add.at(pickup[t], bus[back[t]], mw[back[t]] * s[t, 0] * opts.cold_load_pickup_percent / 100.0)
        rel = (d * mw).sum(axis=1) * s[:, 0] - (back * mw).sum(axis=1) * s[:, 0] * opts.cold_load_pickup_percent / 100
        relief[z] = np.where(obligations[z].to_numpy() > 1e-9, rel, 0.0)
        unserved[z] = np.maximum(obligations[z].to_numpy() - relief[z].to_numpy(), 0.0) * (
            obligations[z].to_numpy() > 1e-9)
        unserved.loc[unserved[z] < 1e-6, z] = 0.0
    zstats["obligation_mw_max"] = [float(obligations[z].max()) for z in zstats["zone"]]
    zstats["shed_mw_max"] = [float(relief[z].max()) for z in zstats["zone"]]
    zstats["shortfall_mw_max"] = [float(unserved[z].max()) for z in zstats["zone"]]
    zstats["pickup_mw_max"] = [float(pickup[:, zone_bus[z]].sum(axis=1).max()) for z in zstats["zone"]]
    zstats["oe417"] = [oe417(relief[z].to_numpy()) for z in zstats["zone"]]
    return Rotation(sched, bstats, zstats, obligations, relief, unserved), dark, pickup


def dc_requested(setup: Setup, mw_by_dc) -> np.ndarray:
    """(D, T) each datacenter's MW in each interval (its load shape; flat by default)."""
    hours = setup.day.hour
    return np.array([float(mw) * (np.asarray(pl.datacenter.load_shape)[hours] if pl.datacenter.load_shape is not None
                                  else np.ones(len(hours)))
                     for pl, mw in zip(setup.placements, mw_by_dc, strict=True)])


def run_step(setup: Setup, total_mw: float | None, *, hints=None, progress: Progress = _quiet) -> StepResult:
    """One step: the datacenters scaled to ``total_mw`` (None: as given). See the module docstring."""
    t0 = time.perf_counter()
    opts, case, fp = setup.opts, setup.case, setup.footprint
    dcs = setup.scenario.datacenters
    mw_by_dc = np.array(scale(dcs, total_mw))
    total = float(mw_by_dc.sum())
    progress(f"step {total:,.0f} MW of datacenters")
    placed = tuple(pl.describe(case, mw) for pl, mw in zip(setup.placements, mw_by_dc, strict=True))
    for line in placed:
        progress(f"  placed {line}")
    progress(f"  limits (N-0, AC, Q limits {'on' if opts.q_limits else 'OFF'}) at {setup.day.label(setup.peak)}:")
    limits = find_limits(setup, mw_by_dc, hints=hints, progress=progress)
    requested = dc_requested(setup, mw_by_dc)
    served = np.minimum(requested, np.array([[lim.deliverable_mw] for lim in limits]))
    # overhead: the reference's net export + losses, plus the loss change the search saw at the peak, scaled
    ref_losses = np.array([r.losses_mw for r in setup.references])
    fp_firm = setup.footprint_firm_mw()
    ref_over = np.array([setup.footprint_pg_mw(r) for r in setup.references]) - fp_firm
    last = next((lim.binding_search.at_limit.point for lim in reversed(limits)
                 if lim.binding_search.at_limit is not None and lim.binding_search.at_limit.point is not None), None)
    served_tot = served.sum(axis=0)
    d_loss = (last.losses_mw - ref_losses[setup.peak]) if last is not None else 0.0
    peak_served = max(float(served_tot[setup.peak]), 1e-9)
    overhead = ref_over + d_loss * served_tot / peak_served
    notes: list[str] = []
    ver = None
    hour_limits: dict = {}
    for round_ in range(LOSS_ROUNDS + NETWORK_ROUNDS):
        served_tot = served.sum(axis=0)
        need = fp_firm + served_tot + overhead + opts.reserve_mw - fp.capacity_mw
        plan = plan_day(setup, mw_by_dc, requested, served, need)
        progress(f"  ladder: shortfall up to {max(need.max(), 0):,.0f} MW; firm shed up to "
                 f"{plan.climb.firm_mw.max():,.0f} MW; rotation over "
                 f"{int((plan.rotation.obligations_mw.max() > 1e-6).sum())} zones"
                 + (f" (round {round_ + 1})" if round_ else ""))
        ver = verify_day(setup, plan, ref_losses + d_loss * served_tot / peak_served, previous=ver)
        progress(f"  verified {ver.n_ok}/{len(ver.checks)} intervals in AC")
        # an hour the network cannot carry as planned: the datacenters take what it carries in that hour
        bad = [t for t, c in enumerate(ver.checks) if _network_failure(c)]
        if bad and len(hour_limits) < setup.day.T and round_ < LOSS_ROUNDS + NETWORK_ROUNDS - 1:
            for t in bad:
                lim = interval_limit(setup, plan, t, ver)
                if lim is None:
                    notes.append(f"at {setup.day.label(t)} the violation is there without the datacenters too "
                                 "(the shed and the ladder cause it): not attributed to them")
                    continue
                hour_limits[setup.day.label(t)] = lim
                drawn = float(plan.dc_drawn_mw[:, t].sum())
                cut = drawn - lim.limit_mw
                if drawn > 0 and cut > 0:
                    served[:, t] = np.maximum(served[:, t] - cut * plan.dc_drawn_mw[:, t] / drawn, 0.0)
                progress(f"    {setup.day.label(t)}: the network carries {lim.limit_mw:,.0f} of {drawn:,.0f} MW of "
                         f"datacenters (binding: {lim.binding() or 'none'})")
            continue
        # (the emergency import is a rung of its own: the overhead is measured without it)
        actual = np.array([c.footprint_pg_mw - c.footprint_demand_mw for c in ver.checks]) + plan.import_mw
        off = np.nan_to_num(actual - overhead)
        if not (np.abs(off) > LOSS_TOL_MW).any() or not np.isfinite(actual).all() or round_ >= LOSS_ROUNDS - 1:
            break
        overhead = np.where(np.isfinite(actual), actual, overhead)
    if not ver.verified:
        notes.append("AC verification failed: " + "; ".join(ver.failures()[:4]))
    if plan.rotation.unserved_mw.to_numpy().max(initial=0) > 0.5:
        z = plan.rotation.unserved_mw.max().idxmax()
        notes.append(f"too little to rotate: {plan.rotation.unserved_mw.sum(axis=1).max():,.0f} MW of the zones' "
                     f"obligations cannot be met without a block dark past {opts.max_hours_dark:g} h (most in "
                     f"{z}); reported as unserved")
    for lab, lim in hour_limits.items():
        notes.append(f"at {lab} the network carries {lim.limit_mw:,.0f} MW of datacenters (binding: "
                     f"{lim.binding() or 'none'}); the rest is not deliverable in that interval")
    return StepResult(datacenter_mw=total, policy=setup.policy.name, requested_mw=mw_by_dc, limits=limits,
                      placements=placed, footprint_firm_mw=fp_firm, dc_requested_mw=requested, overhead_mw=overhead,
                      plan=plan, verification=ver, hour_limits=hour_limits, notes=tuple(notes),
                      seconds=time.perf_counter() - t0)


def _network_failure(c: IntervalCheck) -> bool:
    """The interval did not solve, or has an attributed thermal or voltage violation."""
    if not c.screen.converged:
        return True
    a = c.screen.attributed
    return bool(len(a) and a["kind"].isin(["thermal", "voltage"]).any())


def interval_limit(setup: Setup, plan: Plan, t: int, ver: Verification) -> LimitSearch | None:
    """The datacenter MW the network carries in interval t as planned (every datacenter scaled together),
    by bisection from the failing verified point; None when the interval is not clean without any
    datacenter either (then they are not the cause)."""
    from gridflow.study.verify import interval_state

    st = interval_state(setup, plan, t)
    drawn = float(plan.dc_drawn_mw[:, t].sum())
    dc_p, dc_q = plan.dc_p_mw[t], plan.dc_q_mvar[t]
    warm = {drawn: ver.points[t]} if ver.points[t].converged else {}
    warm[0.0] = setup.references[t]
    buses = np.flatnonzero(dc_p > 0)

    def evaluate(x: float) -> Trial:
        k = x / drawn if drawn > 0 else 0.0
        s2 = State(st.p_mw - dc_p * (1 - k), st.q_mvar - dc_q * (1 - k), st.pg_mw)
        near = min(warm, key=lambda m: abs(m - x))
        pt = setup.solve(s2, warm=warm[near], search=True)
        if pt.converged:
            warm[x] = pt
        return Trial(mw=x, screen=setup.screen(pt, setup.ref_tables[t], x), vm_min_site_pu=site_min_vm(pt, buses),
                     point=pt)

    if drawn <= 0 or not evaluate(0.0).screen.clean:
        return None
    known = [Trial(mw=drawn, screen=ver.checks[t].screen, vm_min_site_pu=np.nan, point=ver.points[t])]
    search = bisect_limit(evaluate, drawn, tol_mw=max(2 * setup.opts.limit_tolerance_mw, 100.0), known=known)
    return with_stability_margin(search, evaluate, setup.opts.voltage_stability_margin_percent,
                                 tol_mw=max(2 * setup.opts.limit_tolerance_mw, 100.0))


@dataclass(frozen=True)
class StudyResult:
    setup: Setup
    steps: tuple[StepResult, ...]
    sensitivity: pd.DataFrame | None = None
    seconds: float = 0.0
    pv: pd.DataFrame | None = None  # the P–V sweep of the first datacenter in the last step (pv_sweep)
    hosting: pd.DataFrame | None = None  # hosting_map = true: each candidate bus's limit (study.hosting)

    @property
    def scenario(self) -> Scenario:
        return self.setup.scenario

    @property
    def case(self) -> Case:
        return self.setup.case

    @property
    def zone_map(self) -> ZoneMap:
        return self.setup.zones


def run_study(scenario: Scenario, *, policy: str | None = None, case: Case | None = None,
              progress: Progress = _quiet, sensitivity: bool = True) -> StudyResult:
    """Run every step of ``scenario`` (its ``steps_mw``, or the datacenters as given)."""
    t0 = time.perf_counter()
    if policy is not None:
        scenario = scenario.with_policy(policy)
    setup = prepare(scenario, case=case, progress=progress)
    steps = []
    hints: dict = {}
    for mw in scenario.study.steps_mw or (None,):
        st = run_step(setup, mw, hints=hints, progress=progress)
        for lim in st.limits:
            hints[lim.name] = (lim.deliverable_mw_n0,)
            if lim.n1 is not None:
                hints[f"{lim.name} N-1"] = (lim.n1.limit_mw,)
        steps.append(st)
        progress(f"  step done in {st.seconds:.1f} s")
    sens = None
    if sensitivity:
        from gridflow.study.sensitivity_table import sensitivity_table

        sens = sensitivity_table(setup, steps[-1], progress=progress)
    pv = pv_sweep(setup, steps[-1], progress=progress)
    hosting = None
    if scenario.study.hosting_map:
        from gridflow.study.hosting import hosting_map

        t1 = time.perf_counter()
        progress(f"hosting map at {setup.day.label(setup.peak)} (each bus alone, N-0"
                 + (" and N-1)" if setup.n1 is not None else ")"))
        hosting = hosting_map(setup, scenario.study.hosting_buses or None, progress=progress)
        progress(f"  hosting map: {len(hosting)} buses in {time.perf_counter() - t1:.1f} s")
    return StudyResult(setup=setup, steps=tuple(steps), sensitivity=sens, seconds=time.perf_counter() - t0, pv=pv,
                       hosting=hosting)


#: points of the P–V sweep up to the limit, and at most this many beyond it (10 % of the limit apart)
PV_POINTS, PV_BEYOND = 4, 4


def pv_sweep(setup: Setup, step: StepResult, *, progress: Progress = _quiet) -> pd.DataFrame:
    """The P–V curve of the first datacenter in the queue at the peak interval (the earlier ones: none): its MW
    from 0 to its N-0 limit in ``PV_POINTS`` steps, then on in steps of 10 % of the limit until the power flow has
    no solution (the nose) or ``PV_BEYOND`` more points; each point warm-started from the one before (a
    continuation). Columns ``datacenter, mw, vm_min_zone_pu, converged, clean``: the lowest bulk-system voltage
    in its zone(s)."""
    lim = step.limits[0]
    evaluate = limit_evaluator(setup, 0, lim.earlier_mw, lim.reference, lim.reference_table)
    top = max(lim.deliverable_mw_n0, setup.opts.limit_tolerance_mw * PV_POINTS)  # the curve is N-0
    xs = [top * k / PV_POINTS for k in range(PV_POINTS + 1)]
    rows = []
    for x in xs + [top * (1 + 0.1 * k) for k in range(1, PV_BEYOND + 1)]:
        tr = evaluate(x)
        rows.append({"datacenter": lim.name, "mw": x, "vm_min_zone_pu": tr.vm_min_site_pu,
                     "converged": tr.converged, "clean": tr.screen.clean})
        if not tr.converged:
            break
    progress(f"P–V sweep of {lim.name}: {len(rows)} points to {rows[-1]['mw']:,.0f} MW")
    return pd.DataFrame(rows)
