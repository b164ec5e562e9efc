"""Zones: which state, zone and RTO every bus belongs to.

A zone map is a CSV with a key column ``area`` (every bus of that area) or
``bus`` (one bus), and columns ``zone``, ``state``, ``rto``. gridflow ships
maps derived from the cases' own bus names in ``cases/zones/`` (see the
README there), e.g. ``activsg25k``; users pass their own CSV path. Buses the
map does not cover get the zone ``"area N"`` and empty state and RTO. A map
made for another case is refused (see :func:`_check_map_fits`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gridflow.case import Case
from gridflow.data import data_path
from gridflow.errors import ScenarioError


@dataclass(frozen=True)
class ZoneMap:
    """Per-bus labels (nb,) object arrays: zone, state, rto."""

    zone: np.ndarray
    state: np.ndarray
    rto: np.ndarray
    source: str

    def buses_of(self, *, zone=None, state=None, area=None, case: Case | None = None) -> np.ndarray:
        """Bus indices of a zone, a state or an area."""
        if zone is not None:
            m = self.zone == zone
            what = f"zone {zone!r}"
        elif state is not None:
            m = self.state == state
            what = f"state {state!r}"
        else:
            m = case.bus.area == area
            what = f"area {area}"
        if not m.any():
            known = sorted(set(self.zone if zone is not None else self.state) - {""})
            hint = "" if area is not None else f"; known: {', '.join(known[:12])}{'...' if len(known) > 12 else ''}"
            raise ScenarioError(f"unknown {what} in {self.source}{hint}")
        return np.flatnonzero(m)


def zone_map_path(name: str) -> Path:
    p = Path(name)
    if p.suffix.lower() == ".csv":
        return p
    return data_path("cases", "zones", f"{name}.csv")


def load_zone_map(name: str | None, case: Case) -> ZoneMap:
    """The zone map ``name`` (a shipped map's name or a CSV path) applied to ``case``'s buses."""
    nb = case.nb
    zone = np.array([f"area {a}" for a in case.bus.area], dtype=object)
    state = np.full(nb, "", dtype=object)
    rto = np.full(nb, "", dtype=object)
    if name is None:
        return ZoneMap(zone, state, rto, "areas")
    path = zone_map_path(name)
    if not path.is_file():
        raise ScenarioError(f"zone map {name!r}: no such file {path}")
    try:
        df = pd.read_csv(path, comment="#")
    except Exception as e:
        raise ScenarioError(f"zone map {path}: not a readable CSV ({e})") from None
    missing = {"zone", "state", "rto"} - set(df.columns)
    if missing:
        raise ScenarioError(f"zone map {path}: missing column {sorted(missing)[0]!r}")
    if "area" in df.columns:
        key, values = "area", case.bus.area
    elif "bus" in df.columns:
        key, values = "bus", case.bus.number
    else:
        raise ScenarioError(f"zone map {path}: needs an 'area' or a 'bus' column")
    if df[key].isna().any() or df[key].duplicated().any():
        raise ScenarioError(f"zone map {path}: column {key!r} has empty or repeated values")
    _check_map_fits(df, key, values, case, name, path)
    df = df.fillna("")
    pos = pd.Index(df[key].astype(np.int64)).get_indexer(values)
    hit = pos >= 0
    zone[hit] = df["zone"].astype(str).to_numpy()[pos[hit]]
    state[hit] = df["state"].astype(str).to_numpy()[pos[hit]]
    rto[hit] = df["rto"].astype(str).to_numpy()[pos[hit]]
    return ZoneMap(zone, state, rto, str(path))


def write_zone_map(case: Case, path, *, by: str = "zone") -> Path:
    """Write a per-bus zone map CSV (columns ``bus, zone, state, rto``) from the case's own zones or areas.

    ``by="zone"`` names each bus's zone by ``case.meta["zone_names"]`` (PSS/E
    ZONE names, kept by the PSS/E reader), ``by="area"`` by
    ``case.meta["area_names"]``; a number without a name is "zone N" / "area N".
    ``state`` and ``rto`` are left empty: no case format carries them; fill
    them in before a study that groups by state or RTO. The file loads back
    with :func:`load_zone_map`.
    """
    if by not in ("zone", "area"):
        raise ScenarioError(f"write_zone_map: by must be 'zone' or 'area', got {by!r}")
    numbers = case.bus.zone if by == "zone" else case.bus.area
    names = case.meta.get(f"{by}_names") or {}
    path = Path(path)
    df = pd.DataFrame({"bus": case.bus.number, "zone": [names.get(int(z), f"{by} {int(z)}") for z in numbers],
                       "state": "", "rto": ""})
    try:
        df.to_csv(path, index=False)
    except OSError as e:
        raise ScenarioError(f"zone map {path}: cannot write ({e.strerror or e})") from None
    return path


# the case each shipped map was made from (cases/zones/make_zones.py)
SHIPPED_MAPS = {"activsg25k": "case_ACTIVSg25k", "activsg2000": "case_ACTIVSg2000", "activsg10k": "case_ACTIVSg10k"}


def _check_map_fits(df: pd.DataFrame, key: str, values: np.ndarray, case: Case, name: str, path: Path) -> None:
    """Refuse a zone map made for another case.

    Rule: every area (or bus) the map names must exist in the case; where the
    map records each area's bus count (column ``buses``, as the shipped maps
    do), the case's area must have exactly that many buses. A map may leave
    areas out (they keep the zone "area N"). ``load_mw`` is not compared: a
    what-if changes loads, not which buses an area has.
    """
    try:
        keys = df[key].astype(np.int64).to_numpy()
    except (ValueError, TypeError):
        raise ScenarioError(f"zone map {path}: column {key!r} must hold whole numbers") from None
    belongs = SHIPPED_MAPS.get(Path(name).stem if Path(name).suffix.lower() != ".csv" else "", None)
    owner = f" (the map of {belongs})" if belongs and belongs != case.name else ""
    have, counts = np.unique(np.asarray(values, np.int64), return_counts=True)
    missing = ~np.isin(keys, have)
    if missing.any():
        raise ScenarioError(f"zone map {name!r}{owner} does not fit {case.name}: {key} {int(keys[missing][0])} "
                            f"is not in the case ({int(missing.sum())} of its {len(keys)} {key}s are not)")
    if key == "area" and "buses" in df.columns:
        want = pd.to_numeric(df["buses"], errors="coerce").to_numpy()
        got = counts[np.searchsorted(have, keys)]
        bad = np.isfinite(want) & (want != got)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ScenarioError(f"zone map {name!r}{owner} does not fit {case.name}: area {int(keys[k])} has "
                                f"{int(want[k])} buses in the map, {int(got[k])} in the case")
