"""Feeder blocks: the part of each zone's firm load that may rotate, cut into blocks.

Manual load shed must stay off load armed for automatic under-frequency load
shedding (NERC EOP-011: otherwise UFLS loses its effect) and off critical load
(hospitals, water, gas infrastructure). So at every footprint bus,
``critical_percent`` and ``ufls_percent`` of its load never rotate (a number, or a
table zone -> % with ``"*"`` for the other zones); buses in ``critical_buses``
never shed at all. What is left, the bus's *rotatable* load, is cut into blocks
of ``block_mw`` (the last one smaller), standing in for distribution feeders, and
the blocks of a zone are listed round-robin over its buses (the first block of
every bus, then the second...) so that a rotation spreads over the zone instead
of darkening whole substations.

Blocks are sized on the base case (the peak hour); in interval t a block sheds
its MW times the zone's load multiplier of that hour.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gridflow.case import Case
from gridflow.errors import ScenarioError
from gridflow.study.zones import ZoneMap

BLOCK_COLUMNS = ["zone", "block", "bus", "bus_index", "mw"]


def _percent_by_bus(value, zone: np.ndarray, what: str, footprint_zones) -> np.ndarray:
    if not isinstance(value, dict):
        return np.full(len(zone), float(value))
    unknown = sorted(set(value) - set(footprint_zones) - {"*"})
    if unknown:
        raise ScenarioError(f"{what}: zone {unknown[0]!r} is not in the footprint")
    default = value.get("*", None)
    out = np.full(len(zone), np.nan)
    for z in footprint_zones:
        v = value.get(z, default)
        if v is None:
            raise ScenarioError(f"{what}: no value for footprint zone {z!r} (add it, or \"*\")")
        out[zone == z] = v
    return np.nan_to_num(out)


def rotatable_mw(case: Case, zones: ZoneMap, footprint_bus: np.ndarray, footprint_zones, *, critical_percent,
                 ufls_percent, critical_buses: np.ndarray) -> np.ndarray:
    """Rotatable firm load per bus (nb,), MW at the base case: footprint buses only, without the critical
    and UFLS-armed shares and without ``critical_buses`` (bool (nb,))."""
    crit = _percent_by_bus(critical_percent, zones.zone, "critical_percent", footprint_zones)
    ufls = _percent_by_bus(ufls_percent, zones.zone, "ufls_percent", footprint_zones)
    both = crit + ufls
    if (both[footprint_bus] >= 100).any():
        z = zones.zone[footprint_bus][np.argmax(both[footprint_bus])]
        raise ScenarioError(f"critical_percent + ufls_percent is {both[footprint_bus].max():g} % in zone {z!r}: "
                            "nothing left to rotate")
    p = np.maximum(case.bus.pd * case.base_mva, 0.0) * (1.0 - both / 100.0)
    return np.where(footprint_bus & ~critical_buses, p, 0.0)


def feeder_blocks(case: Case, zones: ZoneMap, rotatable: np.ndarray, block_mw: float,
                  only_zones=None) -> pd.DataFrame:
    """Blocks of every bus with rotatable load: columns ``zone, block, bus, bus_index, mw`` (block labels
    ``"<bus>-<k>"``), round-robin over each zone's buses. ``only_zones``: keep these zones."""
    take = rotatable > 1e-9
    if only_zones is not None:
        take &= np.isin(zones.zone, list(only_zones))
    idx = np.flatnonzero(take)
    mw = rotatable[idx]
    n_full = np.floor(mw / block_mw + 1e-9).astype(np.int64)
    rest = mw - n_full * block_mw
    extra = rest > 1e-6
    counts = n_full + extra
    bus_rep = np.repeat(idx, counts)
    k = np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0, np.int64)
    size = np.full(len(bus_rep), float(block_mw))
    last = np.cumsum(counts) - 1
    size[last[extra]] = rest[extra]
    df = pd.DataFrame({"k": k, "zone": zones.zone[bus_rep].astype(str),
                       "block": [f"{b}-{j + 1}" for b, j in zip(case.bus.number[bus_rep], k, strict=True)],
                       "bus": case.bus.number[bus_rep].astype(np.int64), "bus_index": bus_rep, "mw": size})
    return df.sort_values(["zone", "k", "bus"], kind="stable").drop(columns="k").reset_index(drop=True)


def check_blocks(rotatable: np.ndarray, zone: np.ndarray, footprint_zones, block_mw: float) -> pd.Series:
    """Rotatable MW per footprint zone; a zone with less than one block is a one-line ScenarioError."""
    per = pd.Series(rotatable).groupby(zone).sum().reindex(list(footprint_zones)).fillna(0.0)
    small = per[per < block_mw]
    if len(small):
        z = small.idxmin()
        raise ScenarioError(f"block_mw = {block_mw:g} MW is larger than the rotatable load of zone {z!r} "
                            f"({small[z]:.1f} MW after the critical and UFLS-armed shares)")
    return per
