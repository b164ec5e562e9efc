"""Place datacenter load on a case's buses.

Rule: a datacenter named by zone, state or area is spread over that region's
load buses at its highest voltage levels, in proportion to their existing
load: take the load buses (P > 0) of the highest base kV present, then the
next level down, until at least ``MIN_BUSES`` buses or all levels are taken
(large sites connect at transmission voltage, not to feeders). A datacenter
given by ``buses`` is split equally over them. Q follows the power factor
(lagging).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridflow.case import Case
from gridflow.errors import ScenarioError
from gridflow.study.scenario import Datacenter
from gridflow.study.zones import ZoneMap

MIN_BUSES = 5


@dataclass(frozen=True)
class DatacenterLoad:
    """Datacenter load per bus (nb,), MW / MVAr: ``p_mw`` total, ``flex_mw`` its flexible part."""

    p_mw: np.ndarray
    q_mvar: np.ndarray
    flex_mw: np.ndarray
    sites: list  # (datacenter name, bus indices)

    @property
    def total_mw(self) -> float:
        return float(self.p_mw.sum())


def site_buses(dc: Datacenter, case: Case, zones: ZoneMap) -> tuple[np.ndarray, np.ndarray]:
    """Bus indices and weights (sum 1) that carry datacenter ``dc``."""
    if dc.buses is not None:
        idx = case.bus_index(list(dc.buses))
        return idx, np.full(len(idx), 1.0 / len(idx))
    region = zones.buses_of(zone=dc.zone, state=dc.state, area=dc.area, case=case)
    load = case.bus.pd[region]
    region = region[load > 0]
    if len(region) == 0:
        raise ScenarioError(f"datacenter {dc.name!r}: its region has no load bus to connect to")
    kv = case.bus.base_kv[region]
    chosen = np.zeros(len(region), bool)
    for level in np.unique(kv)[::-1]:
        chosen |= kv == level
        if chosen.sum() >= MIN_BUSES:
            break
    idx = region[chosen]
    w = case.bus.pd[idx]
    return idx, w / w.sum()


def place(datacenters, case: Case, zones: ZoneMap, total_mw: float | None = None) -> DatacenterLoad:
    """Datacenter load per bus; ``total_mw`` rescales all datacenters to that total (study steps)."""
    nb = case.nb
    p = np.zeros(nb)
    q = np.zeros(nb)
    flex = np.zeros(nb)
    base_total = sum(dc.mw for dc in datacenters)
    k = 1.0 if total_mw is None or base_total == 0 else total_mw / base_total
    sites = []
    for dc in datacenters:
        idx, w = site_buses(dc, case, zones)
        mw = dc.mw * k * w
        np.add.at(p, idx, mw)
        np.add.at(q, idx, mw * np.tan(np.arccos(dc.power_factor)))
        np.add.at(flex, idx, mw * dc.flexible_share)
        sites.append((dc.name, idx))
    return DatacenterLoad(p_mw=p, q_mvar=q, flex_mw=flex, sites=sites)
