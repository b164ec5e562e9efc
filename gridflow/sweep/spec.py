"""The sweep specification: a TOML file (or the same as a dict), every key checked, into a frozen :class:`SweepSpec`.

Two tables, keys fixed::

    [case]
    source = "case_ACTIVSg2000"          # any case gridflow.load_case reads
    zones = "activsg2000"                # zone map (shipped name or CSV)

    [sweep]
    buses = [7018, 7002]                 # candidate points of interconnection (bus numbers), or:
    # zone = "Coast"                     # the study's candidate rule in that zone
    mw = [250, 500, 1000]                # datacenter MW levels at each bus
    hours = [16, 17]                     # clock hours (default: the study's peak hour)
    contingencies = "auto"               # "none" | "auto" | a file (.m change table, .con, .csv)
    footprint = "ERCOT"                  # units balancing the load (an RTO of the zone map)
    # plus screening keys of the study's [study] table: SCREENING_KEYS

Every problem is a :class:`~gridflow.errors.ScenarioError` with one line naming the file and the key. Checks
that need the case (an unknown bus or zone) are made when the sweep starts (:mod:`gridflow.sweep.run`).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from gridflow.errors import ScenarioError
from gridflow.study.scenario import read_toml, scenario_from_dict

#: the keys of [sweep] that are the sweep's own
SWEEP_KEYS = ("buses", "zone", "mw", "hours", "contingencies", "footprint", "power_factor")
#: keys of the study's [study] table a sweep passes through (see ``gridflow study --template``)
SCREENING_KEYS = ("load_shape", "rating", "monitored_kv_min", "dfax_cutoff_percent", "loading_tolerance_percent",
                  "voltage_tolerance_pu", "contingency_kv_min", "emergency_rating", "q_limits", "unavailable_mw")
CASE_KEYS = ("source", "zones")


@dataclass(frozen=True)
class SweepSpec:
    """A checked sweep. ``buses`` (bus numbers) or ``zone`` says where; ``mw`` (MW, increasing), ``hours``
    (clock hours, increasing; None: the study's peak hour); ``contingencies`` "none", "auto" or an absolute
    file path; ``screening``: (key, value) pairs of :data:`SCREENING_KEYS` as given."""

    source: str
    zones: str | None
    mw: tuple[float, ...]
    buses: tuple[int, ...] | None = None
    zone: str | None = None
    hours: tuple[int, ...] | None = None
    contingencies: str = "auto"
    footprint: str = ""
    power_factor: float = 0.98
    screening: tuple[tuple[str, object], ...] = ()
    path: str | None = None

    def scenario_doc(self, hours=None) -> dict:
        """The study scenario (as :func:`~gridflow.study.scenario.scenario_from_dict` takes it) a sweep's Setup is
        built from: one datacenter "sweep" at the candidate buses (or in the zone) of max(mw) MW, the study hours
        ``hours`` (N or [start, end); default 24)."""
        dc = {"name": "sweep", "mw": max(self.mw), "power_factor": self.power_factor}
        if self.buses is not None:
            dc["buses"] = list(self.buses)
        else:
            dc["zone"] = self.zone
        study = {k: _thaw(v) for k, v in self.screening}
        study.update(footprint=self.footprint, contingencies=self.contingencies, interval_minutes=60,
                     hours=list(hours) if isinstance(hours, (tuple, list)) else (24 if hours is None else hours))
        case = {"source": self.source}
        if self.zones is not None:
            case["zones"] = self.zones
        return {"case": case, "datacenter": [dc], "study": study}

    def digest(self) -> str:
        """12 hex digits naming what the sweep computes (not where it came from)."""
        body = json.dumps([self.scenario_doc(), list(self.mw), self.hours], sort_keys=True, default=str)
        return hashlib.sha256(body.encode()).hexdigest()[:12]


def _freeze(v):
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    return v


def _thaw(v):
    if isinstance(v, tuple) and v and all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) for x in v):
        return {k: _thaw(x) for k, x in v}
    if isinstance(v, tuple):
        return [_thaw(x) for x in v]
    return v


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check a sweep TOML file. Raises ScenarioError (one line) for anything unusable."""
    path = Path(path)
    src = str(path)
    doc = read_toml(path, "sweep spec")
    return spec_from_dict(doc, src, path=str(path))


def _ints(v, src, key, *, lo=None, hi=None) -> tuple[int, ...]:
    if not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        raise ScenarioError(f"{src}: [sweep] {key} must be a list of whole numbers, got {v!r}")
    if not v:
        raise ScenarioError(f"{src}: [sweep] {key} is empty")
    if len(set(v)) != len(v):
        raise ScenarioError(f"{src}: [sweep] {key} lists {next(x for x in v if v.count(x) > 1)} twice")
    for x in v:
        if (lo is not None and x < lo) or (hi is not None and x > hi):
            raise ScenarioError(f"{src}: [sweep] {key} value {x} is outside {lo} to {hi}")
    return tuple(v)


def spec_from_dict(doc: dict, src: str = "sweep", path: str | None = None) -> SweepSpec:
    """Build and check a :class:`SweepSpec` from the parsed TOML (also usable from Python). Relative contingency
    file paths are relative to ``path``'s folder. Raises ScenarioError (one line naming the key)."""
    if not isinstance(doc, dict):
        raise ScenarioError(f"{src}: a sweep spec is a table with [case] and [sweep]")
    unknown = set(doc) - {"case", "sweep"}
    if unknown:
        raise ScenarioError(f"{src}: unknown section [{sorted(unknown)[0]}] (expected case, sweep)")
    case = doc.get("case")
    if not isinstance(case, dict) or "source" not in case:
        raise ScenarioError(f"{src}: [case] needs source = \"<case name or file>\"")
    extra = set(case) - set(CASE_KEYS)
    if extra:
        raise ScenarioError(f"{src}: [case] has unknown key {sorted(extra)[0]!r}; allowed: {', '.join(CASE_KEYS)}")
    zones = case.get("zones")
    if zones is not None and not isinstance(zones, str):
        raise ScenarioError(f"{src}: [case] zones must be a zone map name or a CSV path")
    sw = doc.get("sweep")
    if not isinstance(sw, dict):
        raise ScenarioError(f"{src}: needs a [sweep] table (buses or zone, mw)")
    allowed = set(SWEEP_KEYS) | set(SCREENING_KEYS)
    extra = set(sw) - allowed
    if extra:
        raise ScenarioError(f"{src}: [sweep] has unknown key {sorted(extra)[0]!r}; "
                            f"allowed: {', '.join(sorted(allowed))}")
    places = [k for k in ("buses", "zone") if k in sw]
    if len(places) != 1:
        raise ScenarioError(f"{src}: [sweep] needs exactly one of buses, zone (got {' and '.join(places) or 'none'})")
    buses = _ints(sw["buses"], src, "buses") if "buses" in sw else None
    zone = sw.get("zone")
    if "zone" in sw and (not isinstance(zone, str) or not zone):
        raise ScenarioError(f"{src}: [sweep] zone must be a zone name of the zone map, got {zone!r}")
    if "mw" not in sw:
        raise ScenarioError(f"{src}: [sweep] needs mw = [MW levels]")
    mw = sw["mw"]
    if not isinstance(mw, list) or not mw:
        raise ScenarioError(f"{src}: [sweep] mw must be a non-empty list of MW levels, got {mw!r}")
    for x in mw:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x <= 0:
            raise ScenarioError(f"{src}: [sweep] mw values must be numbers > 0, got {x!r}")
    if len(set(mw)) != len(mw):
        raise ScenarioError(f"{src}: [sweep] mw lists {next(x for x in mw if mw.count(x) > 1)} twice")
    hours = tuple(sorted(_ints(sw["hours"], src, "hours", lo=0, hi=23))) if "hours" in sw else None
    cont = sw.get("contingencies", "auto")
    if not isinstance(cont, str) or not cont:
        raise ScenarioError(f"{src}: [sweep] contingencies must be \"none\", \"auto\" or a file path, got {cont!r}")
    if cont not in ("none", "auto"):
        p = Path(cont)
        if not p.is_absolute() and path is not None:
            p = Path(path).parent / p
        if not p.is_file():
            raise ScenarioError(f"{src}: [sweep] contingencies: no such file {cont!r}")
        cont = str(p.resolve())
    footprint = sw.get("footprint", "")
    if not isinstance(footprint, str):
        raise ScenarioError(f"{src}: [sweep] footprint must be an RTO name of the zone map, \"\" or \"all\"")
    pf = sw.get("power_factor", 0.98)
    if isinstance(pf, bool) or not isinstance(pf, (int, float)) or not 0 < pf <= 1:
        raise ScenarioError(f"{src}: [sweep] power_factor must be a number in (0, 1], got {pf!r}")
    screening = tuple(sorted((k, _freeze(sw[k])) for k in SCREENING_KEYS if k in sw))
    spec = SweepSpec(source=str(case["source"]), zones=zones, mw=tuple(sorted(float(x) for x in mw)), buses=buses,
                     zone=zone, hours=hours, contingencies=cont, footprint=footprint, power_factor=float(pf),
                     screening=screening, path=path)
    # the screening keys are checked by the study's own parser (same messages as `gridflow study`)
    try:
        scenario_from_dict(spec.scenario_doc(), f"{src}: [sweep]")
    except ScenarioError as e:
        raise ScenarioError(str(e).replace(f"{src}: [sweep]: ", f"{src}: [sweep] ")) from None
    return spec
