"""Study scenarios: a TOML file or the same as Python objects.

```toml
[case]
source = "case_ACTIVSg25k"     # any name or file gridflow.load_case reads
zones = "activsg25k"            # a zone map in cases/zones/ or a CSV path

[[datacenter]]
name = "NoVA growth"
zone = "Northern Virginia"      # or state = "VA", area = 63, or buses = [...]
mw = 20000
power_factor = 0.98
flexible_share = 0.25           # part that can be curtailed first

[study]
policy = "pro-rata"             # pro-rata | large-load-first | network
reserve_mw = 3000               # operating reserve that must stay unshed
rating = "A"                    # branch rating used for overloads
interval_minutes = 60
hours = 4
critical_buses = []             # never shed
max_hours_dark = 2              # cap on one block's continuous outage
steps_mw = []                   # optional: solve the study with the datacenters scaled to each total
zone_ratio = {}                 # optional pro-rata table: zone -> share (default: share of load)
```

Every problem is a :class:`~gridflow.errors.ScenarioError` with one line that
names the file and the key.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from gridflow.errors import ScenarioError

POLICIES = ("pro-rata", "large-load-first", "network")
RATINGS = ("A", "B", "C")


@dataclass(frozen=True)
class Datacenter:
    """Added datacenter load. Exactly one of zone, state, area, buses says where."""

    name: str
    mw: float
    zone: str | None = None
    state: str | None = None
    area: int | None = None
    buses: tuple[int, ...] | None = None
    power_factor: float = 0.98
    flexible_share: float = 0.0


@dataclass(frozen=True)
class StudyOptions:
    policy: str = "pro-rata"
    reserve_mw: float = 0.0
    rating: str = "A"
    interval_minutes: int = 60
    hours: float = 4.0
    critical_buses: tuple[int, ...] = ()
    max_hours_dark: float = 2.0
    steps_mw: tuple[float, ...] = ()
    zone_ratio: dict = field(default_factory=dict)
    voltage_tolerance_pu: float = 0.005  # a bus is a new voltage violation beyond limits by more than this
    loading_tolerance_percent: float = 1.0  # overload: loading above 100 % (or the base loading) by more than this
    feeder_mw: float = 50.0  # rotation blocks: each load bus's firm load in feeders of this size


@dataclass(frozen=True)
class Scenario:
    source: str
    zones: str | None
    datacenters: tuple[Datacenter, ...]
    study: StudyOptions
    name: str = "study"

    def with_policy(self, policy: str) -> Scenario:
        from dataclasses import replace

        _check_policy(policy, "policy")
        return replace(self, study=replace(self.study, policy=policy))


DEFAULT_SCENARIO = "nova_growth"


def default_scenario() -> Scenario:
    """The embedded default (``cases/scenarios/nova_growth.toml``): Northern Virginia datacenter
    growth of 10, 20, 30 and 40 GW on ACTIVSg25k."""
    from gridflow.data import data_path

    return load_scenario(data_path("cases", "scenarios", f"{DEFAULT_SCENARIO}.toml"))


def load_scenario(path: str | Path) -> Scenario:
    """Read a TOML scenario file."""
    path = Path(path)
    src = str(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ScenarioError(f"{src}: no such file") from None
    except OSError as e:
        raise ScenarioError(f"{src}: cannot read ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{src}: not valid TOML ({e})") from None
    return scenario_from_dict(doc, src, name=path.stem.replace("_", " "))


def scenario_from_dict(doc: dict, src: str = "scenario", name: str = "study") -> Scenario:
    """Build and check a :class:`Scenario` from the parsed TOML (also usable from Python)."""
    unknown = set(doc) - {"case", "datacenter", "study"}
    if unknown:
        raise ScenarioError(f"{src}: unknown section [{sorted(unknown)[0]}] (expected case, datacenter, study)")
    case = doc.get("case", {})
    if not isinstance(case, dict) or "source" not in case:
        raise ScenarioError(f"{src}: [case] needs source = \"<case name or file>\"")
    _only(case, {"source", "zones"}, src, "[case]")
    dcs = doc.get("datacenter", [])
    if not isinstance(dcs, list):
        raise ScenarioError(f"{src}: datacenters are written [[datacenter]] (a list of tables)")
    datacenters = tuple(_datacenter(d, src, i) for i, d in enumerate(dcs))
    study = doc.get("study", {})
    _only(study, {f.name for f in StudyOptions.__dataclass_fields__.values()}, src, "[study]")
    opts = _study(study, src)
    return Scenario(source=str(case["source"]), zones=case.get("zones"), datacenters=datacenters, study=opts,
                    name=name)


def _only(table: dict, allowed: set, src: str, where: str):
    extra = set(table) - allowed
    if extra:
        raise ScenarioError(f"{src}: {where} has unknown key {sorted(extra)[0]!r} "
                            f"(allowed: {', '.join(sorted(allowed))})")


def _number(v, src, key, *, lo=None, hi=None, lo_open=False):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ScenarioError(f"{src}: {key} must be a number, got {v!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ScenarioError(f"{src}: {key} must be {'>' if lo_open else '>='} {lo}, got {v}")
    if hi is not None and v > hi:
        raise ScenarioError(f"{src}: {key} must be <= {hi}, got {v}")
    return float(v)


def _datacenter(d: dict, src: str, i: int) -> Datacenter:
    where = f"[[datacenter]] #{i + 1}"
    if not isinstance(d, dict):
        raise ScenarioError(f"{src}: {where} must be a table")
    _only(d, {"name", "zone", "state", "area", "buses", "mw", "power_factor", "flexible_share"}, src, where)
    name = str(d.get("name", f"datacenter {i + 1}"))
    where = f"datacenter {name!r}"
    if "mw" not in d:
        raise ScenarioError(f"{src}: {where} needs mw")
    mw = _number(d["mw"], src, f"{where} mw", lo=0)
    pf = _number(d.get("power_factor", 0.98), src, f"{where} power_factor", lo=0, hi=1, lo_open=True)
    flex = _number(d.get("flexible_share", 0.0), src, f"{where} flexible_share", lo=0, hi=1)
    places = [k for k in ("zone", "state", "area", "buses") if k in d]
    if len(places) != 1:
        raise ScenarioError(f"{src}: {where} needs exactly one of zone, state, area, buses (got {places or 'none'})")
    buses = None
    if "buses" in d:
        if not isinstance(d["buses"], list) or not d["buses"] or not all(isinstance(b, int) for b in d["buses"]):
            raise ScenarioError(f"{src}: {where} buses must be a non-empty list of bus numbers")
        buses = tuple(d["buses"])
    area = d.get("area")
    if area is not None and (isinstance(area, bool) or not isinstance(area, int)):
        raise ScenarioError(f"{src}: {where} area must be an integer")
    return Datacenter(name=name, mw=mw, zone=d.get("zone"), state=d.get("state"), area=area, buses=buses,
                      power_factor=pf, flexible_share=flex)


def _check_policy(policy, src):
    if policy not in POLICIES:
        raise ScenarioError(f"{src}: unknown policy {policy!r}; choose from {', '.join(POLICIES)}")


def _study(s: dict, src: str) -> StudyOptions:
    policy = s.get("policy", "pro-rata")
    _check_policy(policy, src)
    rating = str(s.get("rating", "A")).upper()
    if rating not in RATINGS:
        raise ScenarioError(f"{src}: rating must be A, B or C, got {s.get('rating')!r}")
    interval = _number(s.get("interval_minutes", 60), src, "interval_minutes", lo=15, hi=60)
    hours = _number(s.get("hours", 4), src, "hours", lo=0, lo_open=True)
    if abs(hours * 60 / interval - round(hours * 60 / interval)) > 1e-9:
        raise ScenarioError(f"{src}: hours ({hours}) must be a whole number of intervals of {interval:g} minutes")
    cap = _number(s.get("max_hours_dark", 2), src, "max_hours_dark", lo=0, lo_open=True)
    if cap * 60 < interval:
        raise ScenarioError(f"{src}: max_hours_dark ({cap}) is shorter than one interval ({interval:g} minutes)")
    crit = s.get("critical_buses", [])
    if not isinstance(crit, list) or not all(isinstance(b, int) and not isinstance(b, bool) for b in crit):
        raise ScenarioError(f"{src}: critical_buses must be a list of bus numbers")
    steps = s.get("steps_mw", [])
    if not isinstance(steps, list):
        raise ScenarioError(f"{src}: steps_mw must be a list of MW totals")
    steps = tuple(_number(v, src, "steps_mw", lo=0) for v in steps)
    ratio = s.get("zone_ratio", {})
    if not isinstance(ratio, dict):
        raise ScenarioError(f"{src}: zone_ratio must be a table zone = share")
    ratio = {str(k): _number(v, src, f"zone_ratio {k!r}", lo=0) for k, v in ratio.items()}
    return StudyOptions(
        policy=policy, reserve_mw=_number(s.get("reserve_mw", 0), src, "reserve_mw", lo=0), rating=rating,
        interval_minutes=int(interval), hours=hours, critical_buses=tuple(crit), max_hours_dark=cap,
        steps_mw=steps, zone_ratio=ratio,
        voltage_tolerance_pu=_number(s.get("voltage_tolerance_pu", 0.005), src, "voltage_tolerance_pu", lo=0),
        loading_tolerance_percent=_number(s.get("loading_tolerance_percent", 1.0), src,
                                          "loading_tolerance_percent", lo=0),
        feeder_mw=_number(s.get("feeder_mw", 50.0), src, "feeder_mw", lo=0, lo_open=True),
    )
