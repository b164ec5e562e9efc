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


#: shares given by the user must add up to 1 within this
SHARE_SUM_TOL = 1e-3


def shares_path(zone_map_name: str) -> Path:
    """The prior-peak share table that goes with a zone map: ``<map>_shares.csv`` beside it."""
    p = zone_map_path(zone_map_name)
    return p.with_name(p.stem + "_shares.csv")


def zone_shares(spec, zone_map_name: str | None, footprint_zones, *, case: Case | None = None,
                zones: ZoneMap | None = None, resolve=None) -> pd.Series:
    """Firm-shed share of every footprint zone (a Series zone -> share, summing to 1).

    ``spec``: ``""`` = the zone map's prior-peak table (``<map>_shares.csv``, written by
    ``cases/zones/make_zones.py``: each zone's base-case load, no datacenters; without a zone map,
    the base case's load by zone); a CSV path with columns ``zone, share``; or a dict zone -> share.
    Given shares must name only footprint zones, cover every one of them and add up to 1 (within
    ``SHARE_SUM_TOL``). ``resolve`` turns a relative path into the scenario's.
    """
    fz = list(footprint_zones)
    if isinstance(spec, str) and spec == "":
        if zone_map_name is None:
            load = pd.Series(case.bus.pd * case.base_mva).groupby(zones.zone).sum()
            s = load.reindex(fz).fillna(0.0)
            return s / s.sum()
        path = shares_path(zone_map_name)
        if not path.is_file():
            raise ScenarioError(f"zone map {zone_map_name!r} has no prior-peak share table ({path.name}); "
                                "give zone_shares = \"<CSV: zone, share>\"")
        df = pd.read_csv(path, comment="#")
        load = df.groupby("zone")["load_mw"].sum()
        missing = [z for z in fz if z not in load.index]
        if missing:
            raise ScenarioError(f"{path}: no share for footprint zone {missing[0]!r}")
        s = load.reindex(fz)
        return s / s.sum()
    if isinstance(spec, str):
        path = resolve(spec) if resolve is not None else Path(spec)
        where = str(path)
        try:
            df = pd.read_csv(path, comment="#")
        except FileNotFoundError:
            raise ScenarioError(f"zone_shares: no such file {path}") from None
        except Exception as e:  # pandas raises many kinds for a bad CSV
            raise ScenarioError(f"zone_shares {path}: not a readable CSV ({e})") from None
        if not {"zone", "share"} <= set(df.columns):
            got = ", ".join(map(str, df.columns))
            raise ScenarioError(f"zone_shares {path}: needs columns zone, share (got {got})")
        if df["zone"].duplicated().any():
            raise ScenarioError(f"zone_shares {path}: zone {df['zone'][df['zone'].duplicated()].iloc[0]!r} twice")
        vals = pd.to_numeric(df["share"], errors="coerce")
        if vals.isna().any() or (vals < 0).any() or not np.isfinite(vals).all():
            k = int(np.flatnonzero(vals.isna().to_numpy() | ~(vals.to_numpy() >= 0))[0])
            raise ScenarioError(f"zone_shares {path}: share of {df['zone'].iloc[k]!r} is not a number >= 0 "
                                f"({df['share'].iloc[k]!r})")
        given = dict(zip(df["zone"].astype(str), vals.astype(float), strict=True))
    else:
        where = "zone_shares"
        given = dict(spec)
    unknown = [z for z in given if z not in fz]
    if unknown:
        raise ScenarioError(f"{where}: zone {unknown[0]!r} is not in the footprint ({', '.join(fz)})")
    missing = [z for z in fz if z not in given]
    if missing:
        raise ScenarioError(f"{where}: no share for footprint zone {missing[0]!r}")
    s = pd.Series(given, dtype=float).reindex(fz)
    if abs(s.sum() - 1.0) > SHARE_SUM_TOL:
        raise ScenarioError(f"{where}: the shares add up to {s.sum():.4f}, not 1")
    return s / s.sum()


#: shipped zone maps by case name
SHIPPED = {"case_ACTIVSg25k": "activsg25k", "case_ACTIVSg2000": "activsg2000", "case_ACTIVSg10k": "activsg10k"}


def default_zone_map(case: Case) -> str | None:
    """The shipped zone map of a case (by its name), or None."""
    name = Path(str(case.name)).stem
    return SHIPPED.get(name)


def candidate_buses(case: Case, zones: ZoneMap, *, zone: str | None = None, kv_min: float = 0.0,
                    name: str | None = None) -> pd.DataFrame:
    """Buses that could take a new large load: ``bus, name, kv, zone, rto, load_mw`` (MW of existing load),
    highest kV first, then the largest load; filtered by zone, minimum kV and a text in the name
    (case-insensitive). An unknown zone is a one-line ScenarioError."""
    m = case.bus.base_kv >= kv_min
    if zone is not None:
        if not (zones.zone == zone).any():
            known = sorted(set(zones.zone))
            raise ScenarioError(f"unknown zone {zone!r} in {zones.source}; known: {', '.join(known[:12])}"
                                + ("..." if len(known) > 12 else ""))
        m &= zones.zone == zone
    names = np.array([str(n).strip() for n in case.bus.name], dtype=object)
    if name:
        m &= np.array([name.lower() in n.lower() for n in names])
    idx = np.flatnonzero(m)
    df = pd.DataFrame({"bus": case.bus.number[idx], "name": names[idx], "kv": case.bus.base_kv[idx],
                       "zone": zones.zone[idx], "rto": zones.rto[idx], "load_mw": case.bus.pd[idx] * case.base_mva})
    return df.sort_values(["kv", "load_mw", "bus"], ascending=[False, False, True]).reset_index(drop=True)
