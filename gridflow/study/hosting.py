"""Hosting: how much one point of interconnection can take, and what-if points at a single bus.

A planner's question is per bus: "how many MW can connect at bus X, N-0 and N-1,
and what stops it?" Both functions here place the datacenter load at **one bus**
(power factor ``POWER_FACTOR`` unless the scenario's first datacenter says
otherwise), balanced by the footprint's units as every study point is
(:mod:`.acsolve`), and judge it as the study does (:mod:`.screening` N-0 on
``rating``, :mod:`.n1` N-1 on ``emergency_rating``, attribution against the same
hour, and the same contingency, without the new load).

* :func:`hosting_map`: each candidate bus's limit. N-0: a warm-started bisection
  on the MW (:func:`gridflow.study.search.bisect_limit`, with the study's
  voltage-stability margin at a collapse); N-1: a bisection at or below it, each
  point's contingencies screened (DC) and the rest solved in AC **as one batch**
  of the engine (every contingency of a point in one Newton, a chord Jacobian
  shared). The limit of each is the largest MW at which the study's judge finds
  no attributed violation, to ``limit_tolerance_mw``.
* :func:`evaluate_points`: fixed MW levels at one bus and one hour, every
  contingency judged (no screening: a sweep reports each contingency's outcome),
  rows of :data:`POINT_COLUMNS`; the unit of work of :mod:`gridflow.sweep`.

Candidate buses (:func:`candidate_buses`): load buses in the datacenters' zones
at or above ``contingency_kv_min`` (default 230 kV) (where the zones have no load
at that voltage, every bus at it but generator terminals), or the buses given.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from gridflow.errors import ScenarioError
from gridflow.study.datacenters import Placement
from gridflow.study.run import Setup, _balanced, search_limits
from gridflow.study.scenario import Datacenter

#: power factor of a datacenter placed by a hosting map or a sweep, unless the scenario has a datacenter
POWER_FACTOR = 0.98
HOSTING_COLUMNS = ["bus", "name", "kv", "zone", "limit_mw_n0", "limit_mw_n1", "binding", "binding_contingency"]
#: one row per point: the base case ("base") and each contingency
POINT_COLUMNS = ["bus", "mw", "hour", "contingency", "converged", "deliverable", "max_loading_percent", "vm_min_pu",
                 "binding"]


def candidate_buses(setup: Setup, buses=None) -> np.ndarray:
    """Bus indices of the candidate points of interconnection: ``buses`` (bus numbers), else every load bus
    of the datacenters' zones at or above ``contingency_kv_min`` (none: every such bus without a generator).
    Raises ScenarioError for an unknown bus or an empty set."""
    case = setup.case
    if buses is not None:
        try:
            idx = case.bus_index(list(buses))
        except Exception as e:
            raise ScenarioError(f"hosting buses: {e}") from None
    else:
        dcz = sorted({str(z) for p in setup.placements for z in setup.zones.zone[p.bus]})
        kv_min = setup.opts.contingency_kv_min
        hv = np.isin(setup.zones.zone, dcz) & (case.bus.base_kv >= kv_min) & (case.bus.type != 4)
        idx = np.flatnonzero(hv & (case.bus.pd > 0))
        if not len(idx):  # no load at that voltage (ACTIVSg2000): every bus there, generator terminals aside
            idx = np.flatnonzero(hv & ~np.isin(np.arange(case.nb), case.gen.bus[case.gen.status]))
        if not len(idx):
            raise ScenarioError(f"no bus at or above {kv_min:g} kV in {', '.join(dcz)}: give hosting_buses")
    return np.asarray(idx, np.int64)


def one_bus(setup: Setup, b: int) -> Placement:
    """The datacenter placement "all of it at bus index b"."""
    num = int(setup.case.bus.number[b])
    pf = setup.placements[0].datacenter.power_factor if setup.placements else POWER_FACTOR
    dc = Datacenter(name=f"bus {num}", mw=0.0, buses=(num,), power_factor=pf)
    return Placement(dc, np.array([b]), np.array([1.0]), "buses")


def _focus(setup: Setup, b: int) -> Setup:
    """``setup`` with the datacenter at bus b alone; N-1 always solves in AC the outages at b or next to it."""
    su = replace(setup, placements=(one_bus(setup, b),))
    if setup.n1 is not None:
        case = setup.case
        near = np.zeros(case.nb, bool)
        near[b] = True
        br = case.branch
        near[br.t[br.status & (br.f == b)]] = True
        near[br.f[br.status & (br.t == b)]] = True
        su = replace(su, n1=setup.n1.focus(near))
    return su


def bus_limit(setup: Setup, b: int, max_mw: float) -> dict:
    """The hosting limit of bus index b at the peak interval: one :data:`HOSTING_COLUMNS` row."""
    su = _focus(setup, b)
    t = su.peak
    ref_pt, ref_tab = su.references[t], su.ref_tables[t]
    n0, n1, _ = search_limits(su, 0, [0.0], ref_pt, ref_tab, max_mw)
    binding, where = n0.binding(), "base"
    n1_mw = None if su.n1 is None else 0.0  # no N-0 room: none N-1 either
    if n1 is not None:
        if n1.above is not None:
            binding = n1.binding()
            row = n1.above.screen.binding_row()
            where = str(row.get("contingency", "base")) if row is not None else "base"
        n1_mw = n1.limit_mw
    case = su.case
    return {"bus": int(case.bus.number[b]), "name": str(case.bus.name[b]).strip(), "kv": float(case.bus.base_kv[b]),
            "zone": str(su.zones.zone[b]), "limit_mw_n0": n0.limit_mw, "limit_mw_n1": n1_mw,
            "binding": binding or f"none up to {max_mw:,.0f} MW", "binding_contingency": where if binding else ""}


def hosting_map(setup: Setup, buses=None, *, max_mw: float | None = None, progress=lambda _m: None) -> pd.DataFrame:
    """Each candidate bus's hosting limit, N-0 and N-1 (:data:`HOSTING_COLUMNS`), searched up to ``max_mw``
    (default: the scenario's largest step)."""
    idx = candidate_buses(setup, buses)
    if max_mw is None:
        steps = setup.opts.steps_mw
        max_mw = max(steps) if steps else sum(dc.mw for dc in setup.scenario.datacenters)
    top = float(max_mw)
    rows = []
    for j, b in enumerate(idx):
        rows.append(bus_limit(setup, int(b), top))
        r = rows[-1]
        progress(f"    hosting {j + 1}/{len(idx)}: bus {r['bus']} {r['name']} ({r['kv']:g} kV): "
                 f"{r['limit_mw_n0']:,.0f} MW N-0"
                 + (f", {r['limit_mw_n1']:,.0f} MW N-1" if r["limit_mw_n1"] is not None else "")
                 + (f" ({r['binding']})" if r["binding_contingency"] else ""))
    return pd.DataFrame(rows, columns=HOSTING_COLUMNS)


def evaluate_points(setup: Setup, b: int, mws, t: int, *, contingencies: bool = True) -> pd.DataFrame:
    """Datacenter load of each of ``mws`` (MW, solved in increasing order, each warm-started from the one
    before) at bus index b in interval t, judged N-0 (contingency "base") and after every contingency of the
    study: rows of :data:`POINT_COLUMNS`."""
    su = _focus(setup, b)
    pl = su.placements[0]
    ref_pt, ref_tab = su.references[t], su.ref_tables[t]
    num = int(su.case.bus.number[b])
    hour = int(su.day.hour[t])
    warm = ref_pt
    parts = []
    for mw in sorted(float(m) for m in mws):
        p = pl.p_mw(su.case.nb, mw)
        pt = _balanced(su, t, p, p * np.tan(np.arccos(pl.datacenter.power_factor)), warm=warm)
        sc = su.screen(pt, ref_tab, mw)
        base = {"contingency": "base", "converged": sc.converged, "deliverable": sc.clean,
                "max_loading_percent": sc.max_loading_percent, "vm_min_pu": sc.min_vm_pu,
                "binding": sc.binding() if sc.converged else "voltage collapse"}
        rows = pd.DataFrame([base])
        if pt.converged:
            warm = pt
        if contingencies and su.n1 is not None:  # a point that does not solve: every contingency says so
            rows = pd.concat([rows, su.n1.outcomes(pt, ref_pt, mw)], ignore_index=True)
        parts.append(rows.assign(bus=num, mw=mw, hour=hour))
    out = pd.concat(parts, ignore_index=True)
    return out[POINT_COLUMNS]
