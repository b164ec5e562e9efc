"""The footprint: the balancing authority (RTO) that runs the study's emergency.

PJM dispatches PJM's units for a PJM load and sheds PJM's load when they fall
short; interchange with the neighbours stays at its scheduled value, or at a
stated emergency purchase. So the footprint decides three things:

* **who responds**: its online generators pick up the datacenters, the losses and
  every change of demand, by headroom; every other unit holds its base-case
  dispatch (``interchange = "fixed"``);
* **adequacy**: its online capacity - its load - its losses - reserve + allowed
  imports (:meth:`Footprint.shortfall_mw`);
* **who may be shed**: only its load, by its zones' obligations.

A footprint is an ``rto`` of the zone map (``"PJM"``, ``"ERCOT"``...); ``"all"``
is the whole case (the only choice without a zone map).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from gridflow.case import PV, REF, Case
from gridflow.errors import ScenarioError
from gridflow.study.zones import ZoneMap


@dataclass(frozen=True)
class Footprint:
    """Buses (nb,) and generators (ng,) of one balancing authority."""

    name: str
    bus: np.ndarray  # bool (nb,)
    gen: np.ndarray  # bool (ng,): online generators at its buses (the responders)
    capacity_mw: float  # sum of Pmax of its online generators
    zones: tuple[str, ...]  # its zones, sorted

    def load_mw(self, p_mw: np.ndarray) -> np.ndarray:
        """Footprint total of a per-bus MW array (..., nb) -> (...)."""
        return np.asarray(p_mw)[..., self.bus].sum(axis=-1)

    def describe(self) -> str:
        return (f"footprint {self.name}: {int(self.bus.sum()):,} buses, {len(self.zones)} zones, "
                f"{int(self.gen.sum()):,} online units, {self.capacity_mw:,.0f} MW of capacity")


def derate(case: Case, fp: Footprint, unavailable_mw: float) -> tuple[Case, Footprint]:
    """The case with ``unavailable_mw`` of the footprint's capacity gone, taken from its online units'
    headroom (Pmax - Pg) in proportion, so the base dispatch stands; and the footprint with its new capacity.
    More than the headroom is a one-line ScenarioError."""
    if unavailable_mw <= 0:
        return case, fp
    g = case.gen
    base = case.base_mva
    room = np.where(fp.gen, np.maximum(g.pmax - g.pg, 0.0), 0.0) * base
    if unavailable_mw > room.sum():
        raise ScenarioError(f"unavailable_mw = {unavailable_mw:,.0f} MW is more than the headroom of footprint "
                            f"{fp.name}'s units ({room.sum():,.0f} MW)")
    pmax = g.pmax - unavailable_mw * room / room.sum() / base
    case = case.replace(gen={"pmax": pmax})
    return case, replace(fp, capacity_mw=float(np.sum(pmax[fp.gen]) * base))


#: the angle reference (slack bus) moves when its units have less reactive margin than this, MVAr
REF_MARGIN_MVAR = 100.0


def reference_bus(case: Case, fp: Footprint, q_mvar: np.ndarray, held: np.ndarray) -> tuple[Case, int | None]:
    """The case with its angle reference (slack) moved to the footprint's generator bus with the most reactive
    margin both ways (``min(Qmax - Q, Q - Qmin)`` summed over its online units, at the solution whose generator
    Q is ``q_mvar`` (ng,), MVAr; buses with a unit ``held`` at a Q limit excluded), when the present reference
    has less than ``REF_MARGIN_MVAR``; the old reference made PV. Returns the case and the new reference's bus
    index (None when it stays). The slack bus is the one generator bus whose Q a power flow cannot hold within
    limits, so it goes where the most Q margin is; its P is the footprint's to balance either way."""
    g = case.gen
    base = case.base_mva
    on = fp.gen & np.isfinite(g.qmax) & np.isfinite(g.qmin)
    nb = case.nb
    qmax, qmin, q = np.zeros(nb), np.zeros(nb), np.zeros(nb)
    np.add.at(qmax, g.bus[on], g.qmax[on] * base)
    np.add.at(qmin, g.bus[on], g.qmin[on] * base)
    np.add.at(q, g.bus[on], q_mvar[on])
    margin = np.where(np.isin(np.arange(nb), g.bus[on]), np.minimum(qmax - q, q - qmin), -np.inf)
    margin[np.unique(g.bus[held & g.status])] = -np.inf
    ref = np.flatnonzero(case.bus.type == REF)
    ref_margin = np.minimum(qmax[ref] - q[ref], q[ref] - qmin[ref])
    if len(ref) == 1 and ref_margin[0] >= REF_MARGIN_MVAR or not np.isfinite(margin).any():
        return case, None
    new = int(np.argmax(margin))
    t = case.bus.type.copy()
    t[t == REF] = PV
    t[new] = REF
    return case.replace(bus={"type": t}), new


def footprint_of(name: str, case: Case, zones: ZoneMap, datacenter_buses: np.ndarray | None = None) -> Footprint:
    """The footprint ``name`` (an ``rto`` of the zone map, ``"all"``, or ``""``: the RTO of the buses in
    ``datacenter_buses``, which must all be in one)."""
    rtos = sorted(set(zones.rto) - {""})
    if name == "":
        if datacenter_buses is None or not len(datacenter_buses):
            name = "all"
        else:
            found = sorted(set(zones.rto[datacenter_buses]))
            if len(found) != 1 or found == [""]:
                raise ScenarioError(f"the datacenters are in {', '.join(repr(r) for r in found) or 'no RTO'}: "
                                    "say which footprint runs the emergency (footprint = \"<RTO>\" or \"all\")")
            name = found[0]
    if name == "all":
        bus = np.ones(case.nb, bool)
    else:
        bus = zones.rto == name
        if not bus.any():
            known = ", ".join(rtos) or 'none (no zone map: use "all")'
            raise ScenarioError(f"unknown footprint {name!r} in {zones.source}; known: {known}")
    gen = case.gen.status & bus[case.gen.bus]
    if not gen.any():
        raise ScenarioError(f"footprint {name!r} has no online generator")
    cap = float(np.sum(case.gen.pmax[gen]) * case.base_mva)
    return Footprint(name=name, bus=bus, gen=gen, capacity_mw=cap, zones=tuple(sorted(set(zones.zone[bus]))))
