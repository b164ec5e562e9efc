"""Place datacenter load on a case's buses, and say how it was placed.

First choice, as planners study it: the points of interconnection, ``buses =
[...]`` (the MW split equally over them; ``gridflow buses CASE --zone Z --kv-min
230`` lists candidates). A datacenter named only by zone, state or area is spread
over that region's load buses at its highest voltage levels, in proportion to
their existing load: take the load buses (P > 0) of the highest base kV present,
then the next level down, until at least ``MIN_BUSES`` buses or all levels are
taken (large sites connect at transmission voltage, not to feeders). The
``all-load`` rule (used by the study's sensitivity table) spreads it over every
load bus of the region in proportion to its load instead. Q follows the power
factor (lagging). :meth:`Placement.describe` says it in one line, which every
step prints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridflow.case import Case
from gridflow.errors import CaseError, ScenarioError
from gridflow.study.scenario import Datacenter
from gridflow.study.zones import ZoneMap

MIN_BUSES = 5
RULES = ("auto", "all-load")


@dataclass(frozen=True)
class Placement:
    """Where one datacenter connects: bus indices (k,) and the share of its MW at each (sums to 1)."""

    datacenter: Datacenter
    bus: np.ndarray
    weight: np.ndarray
    rule: str  # "buses", "highest-kv" or "all-load"

    def p_mw(self, nb: int, mw: float) -> np.ndarray:
        """Its load per bus (nb,) for ``mw`` in all, MW."""
        out = np.zeros(nb)
        np.add.at(out, self.bus, mw * self.weight)
        return out

    def describe(self, case: Case, mw: float, top: int = 4) -> str:
        """One line: ``"NoVA: 10,000 MW on 9 buses at 500 kV (the buses given, equal shares): 63047 ASHBURN
        1,111 MW, ..."``."""
        kv = sorted({float(k) for k in case.bus.base_kv[self.bus]}, reverse=True)
        how = {"buses": "the buses given, equal shares",
               "highest-kv": f"the highest-kV load buses of {self.datacenter.where}, in proportion to their load",
               "all-load": f"every load bus of {self.datacenter.where}, in proportion to its load"}[self.rule]
        order = np.argsort(-self.weight, kind="stable")[:top]
        listed = ", ".join(f"{int(case.bus.number[self.bus[j]])} {str(case.bus.name[self.bus[j]]).strip()} "
                           f"{mw * self.weight[j]:,.0f} MW" for j in order)
        more = f", ... ({len(self.bus) - top} more)" if len(self.bus) > top else ""
        return (f"{self.datacenter.name}: {mw:,.0f} MW on {len(self.bus)} bus{'es' if len(self.bus) > 1 else ''} "
                f"at {'/'.join(f'{k:g}' for k in kv)} kV ({how}): {listed}{more}")


def place_one(dc: Datacenter, case: Case, zones: ZoneMap, rule: str = "auto") -> Placement:
    """Where ``dc`` connects (see the module docstring); ``rule`` = "auto" or "all-load"."""
    if rule not in RULES:
        raise ScenarioError(f"unknown placement rule {rule!r}; choose from {', '.join(RULES)}")
    if dc.buses is not None and rule == "auto":
        try:
            idx = case.bus_index(list(dc.buses))
        except CaseError as e:
            raise ScenarioError(f"datacenter {dc.name!r}: {e}") from None
        return Placement(dc, idx, np.full(len(idx), 1.0 / len(idx)), "buses")
    if dc.buses is not None:  # all-load around given buses: every load bus of their zones
        idx = case.bus_index(list(dc.buses))
        region = np.flatnonzero(np.isin(zones.zone, zones.zone[idx]))
    else:
        region = zones.buses_of(zone=dc.zone, state=dc.state, area=dc.area, case=case)
    region = region[case.bus.pd[region] > 0]
    if len(region) == 0:
        raise ScenarioError(f"datacenter {dc.name!r}: its region has no load bus to connect to")
    if rule == "all-load":
        w = case.bus.pd[region]
        return Placement(dc, region, w / w.sum(), "all-load")
    kv = case.bus.base_kv[region]
    chosen = np.zeros(len(region), bool)
    for level in np.unique(kv)[::-1]:
        chosen |= kv == level
        if chosen.sum() >= MIN_BUSES:
            break
    idx = region[chosen]
    w = case.bus.pd[idx]
    return Placement(dc, idx, w / w.sum(), "highest-kv")


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


def scale(datacenters, total_mw: float | None) -> list[float]:
    """Each datacenter's MW when all are rescaled to ``total_mw`` (None: as given)."""
    base_total = sum(dc.mw for dc in datacenters)
    k = 1.0 if total_mw is None or base_total == 0 else total_mw / base_total
    return [dc.mw * k for dc in datacenters]


def place(datacenters, case: Case, zones: ZoneMap, total_mw: float | None = None) -> DatacenterLoad:
    """Datacenter load per bus; ``total_mw`` rescales all datacenters to that total (study steps)."""
    nb = case.nb
    p, q, flex = np.zeros(nb), np.zeros(nb), np.zeros(nb)
    sites = []
    for dc, mw in zip(datacenters, scale(datacenters, total_mw), strict=True):
        pl = place_one(dc, case, zones)
        pi = pl.p_mw(nb, mw)
        p += pi
        q += pi * np.tan(np.arccos(dc.power_factor))
        flex += pi * dc.flexible_share
        sites.append((dc.name, pl.bus))
    return DatacenterLoad(p_mw=p, q_mvar=q, flex_mw=flex, sites=sites)
