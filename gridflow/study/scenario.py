"""Study scenarios: a TOML file (or the same as a dict), every key checked, every default stated.

A scenario has three sections: ``[case]`` (the grid and its zone map),
``[[datacenter]]`` (one table per new large load, in interconnection-queue
order) and ``[study]`` (everything else). :data:`DATACENTER_KEYS` and
:data:`STUDY_KEYS` list every key with its default and what it means;
``gridflow study --template`` prints them as a commented scenario
(:func:`template`), so the documentation and the parser cannot drift apart.

Every problem is a :class:`~gridflow.errors.ScenarioError` with one line that
names the file and the key. Checks that need the case (an unknown footprint or
zone, shares that do not cover the footprint, a block larger than a zone's
rotatable load, emergency ratings the case lacks) are made when the study
starts (:mod:`gridflow.study.run`), before any power flow.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from gridflow.errors import ScenarioError

POLICIES = ("pro-rata", "large-load-first")
RATINGS = ("A", "B", "C")
SHAPES = ("summer-peak", "winter-peak", "flat")
#: why the ``network`` policy is gone (see the README's study section)
NETWORK_REMOVED = ("the 'network' policy was removed: its DC linear program could not give a verified answer "
                   "of its own (it fell back on every step tried); use pro-rata or large-load-first")


# ------------------------------------------------------------------------------------------------- keys

@dataclass(frozen=True)
class Key:
    """One scenario key: its name, default (as written in TOML) and meaning."""

    name: str
    default: object
    doc: str


CASE_KEYS = (
    Key("source", "case_ACTIVSg25k", "any case name or file gridflow.load_case reads"),
    Key("zones", "activsg25k", "zone map: a shipped name (cases/zones/) or a CSV path (area or bus, zone, state, rto)"),
)

DATACENTER_KEYS = (
    Key("name", "datacenter 1", "how the output names it"),
    Key("buses", [], "where, first choice: the points of interconnection (bus numbers; "
                     "`gridflow buses CASE --zone Z --kv-min 230` lists candidates); the MW is split equally"),
    Key("zone", None, "or: a zone of the zone map (spread over its load buses at the highest kV, >= 5 buses, "
                      "in proportion to their load)"),
    Key("state", None, "or: a state (same rule)"),
    Key("area", None, "or: a case area number (same rule)"),
    Key("mw", 0.0, "requested MW (steps_mw rescales every datacenter)"),
    Key("power_factor", 0.98, "lagging"),
    Key("flexible_share", 0.0, "share of the site that can be curtailed (for at most max_curtail_hours)"),
    Key("backup_share", 0.0, "share of the site its backup generation can carry (for at most backup_max_hours)"),
    Key("load_shape", "flat", "\"flat\" or 24 hourly multipliers of mw"),
)

STUDY_KEYS = (
    # footprint and interchange
    Key("footprint", "", "RTO/BA whose units respond and whose load may be shed (an `rto` of the zone map); "
                         "\"\": the RTO of the datacenters' zones; \"all\": the whole case"),
    Key("interchange", "fixed", "every other footprint keeps its base-case dispatch (its net interchange)"),
    Key("emergency_import_mw", 0.0, "emergency purchases the other footprints can supply, MW (a ladder rung)"),
    Key("reserve_mw", 0.0, "operating reserve the footprint's units keep unloaded, MW"),
    Key("unavailable_mw", 0.0, "footprint capacity unavailable on the day (forced outages, failures to start, "
                               "heat derates), MW, taken from the units' headroom in proportion"),
    Key("q_limits", True, "generator reactive limits enforced (PV -> PQ) in every solve"),
    # the day
    Key("load_shape", "summer-peak", "firm load by hour: \"summer-peak\", \"winter-peak\" (cases/shapes/), "
                                     "\"flat\", 24 multipliers, or a table zone = [24] (\"*\" = the other zones)"),
    Key("interval_minutes", 60, "interval (and rotation period), 10 to 60 minutes, dividing 60"),
    Key("hours", 24, "hours of the day studied: 24 (all), N (the N-hour window with the most load) or "
                     "[start, end)"),
    Key("steps_mw", [], "solve the study with the datacenters scaled to each total, MW"),
    # network limits
    Key("rating", "A", "branch rating for N-0 (A, B or C)"),
    Key("monitored_kv_min", 100.0, "branches monitored for attribution: at or above this kV, plus every branch "
                                   "inside the datacenters' zones"),
    Key("dfax_cutoff_percent", 5.0, "an overload counts against the datacenters only if its flow changes by at "
                                    "least this % of the datacenter MW served"),
    Key("loading_tolerance_percent", 1.0, "a branch already over its rating counts only if worsened by more than "
                                          "this many points"),
    Key("voltage_tolerance_pu", 0.005, "a bus counts as a voltage violation beyond its limits by more than this"),
    Key("voltage_stability_margin_percent", 5.0, "a limit set by voltage collapse is this far below the nose of "
                                                 "the P–V curve (WECC criterion: >= 5 % intact)"),
    Key("limit_tolerance_mw", 50.0, "the limit searches stop when the bracket is this narrow, MW"),
    # N-1
    Key("contingencies", "auto", "\"auto\" (branches >= contingency_kv_min in the datacenters' zones and the zones "
                                 "next to them, plus the case's matpower contab there), \"none\" (N-0 only), or a "
                                 "file: .m change table, PSS/E .con, .csv"),
    Key("contingency_kv_min", 230.0, "\"auto\" contingencies: branches at or above this kV"),
    Key("emergency_rating", "B", "rating after a contingency (B or C; 0 falls back to A)"),
    Key("hosting_map", False, "per-bus hosting map: each candidate bus's limit alone, N-0 and N-1 "
                              "(hosting_by_bus.csv, hosting_map.png)"),
    Key("hosting_buses", [], "candidate buses of the hosting map; []: the load buses of the datacenters' zones "
                             "at or above contingency_kv_min"),
    # the ladder
    Key("policy", "pro-rata", "\"pro-rata\": the ladder in PJM Manual 13's order; \"large-load-first\": "
                              "eligible large loads are curtailed before demand response"),
    Key("demand_response_mw", 0.0, "load management / demand response the footprint can call, MW"),
    Key("voltage_reduction_percent", 0.0, "load reduction by voltage reduction, % of the footprint's firm load"),
    Key("max_curtail_hours", 4.0, "a datacenter's flexible share is curtailed at most this many hours a day"),
    Key("backup_max_hours", 4.0, "a datacenter's backup generation runs at most this many hours a day"),
    Key("large_load_min_mw", 75.0, "large-load-first: sites (buses) of at least this many MW are curtailed first"),
    # firm shed and rotation
    Key("zone_shares", "", "firm-shed shares by zone: \"\" = the zone map's prior-peak table "
                           "(cases/zones/<map>_shares.csv), a CSV path (zone, share) or a table zone = share"),
    Key("block_mw", 15.0, "feeder block size for rotation, MW"),
    Key("critical_percent", 10.0, "% of each bus's load that is critical (never rotated); or a table zone = %"),
    Key("ufls_percent", 25.0, "% armed for under-frequency load shedding (never rotated); or a table zone = %"),
    Key("critical_buses", [], "buses never shed at all"),
    Key("max_hours_dark", 2.0, "no block dark longer than this in a row, hours"),
    Key("cold_load_pickup_percent", 0.0, "a block's load is this much higher in the interval it comes back"),
)


# ------------------------------------------------------------------------------------------------- values

@dataclass(frozen=True)
class Datacenter:
    """Added datacenter load. Exactly one of buses, zone, state, area says where."""

    name: str
    mw: float
    zone: str | None = None
    state: str | None = None
    area: int | None = None
    buses: tuple[int, ...] | None = None
    power_factor: float = 0.98
    flexible_share: float = 0.0
    backup_share: float = 0.0
    load_shape: tuple[float, ...] | None = None  # 24 multipliers; None: flat

    @property
    def where(self) -> str:
        if self.buses is not None:
            return f"buses {', '.join(str(b) for b in self.buses)}"
        if self.zone is not None:
            return f"zone {self.zone!r}"
        if self.state is not None:
            return f"state {self.state!r}"
        return f"area {self.area}"


@dataclass(frozen=True)
class StudyOptions:
    """The ``[study]`` table; see :data:`STUDY_KEYS` for each field's meaning and default."""

    footprint: str = ""
    interchange: str = "fixed"
    emergency_import_mw: float = 0.0
    reserve_mw: float = 0.0
    unavailable_mw: float = 0.0
    q_limits: bool = True
    load_shape: object = "summer-peak"  # a name, a 24-tuple, or a dict zone -> 24-tuple
    interval_minutes: int = 60
    hours: tuple[int, int] | int = 24  # (start, end) or N
    steps_mw: tuple[float, ...] = ()
    rating: str = "A"
    monitored_kv_min: float = 100.0
    dfax_cutoff_percent: float = 5.0
    loading_tolerance_percent: float = 1.0
    voltage_tolerance_pu: float = 0.005
    voltage_stability_margin_percent: float = 5.0
    limit_tolerance_mw: float = 50.0
    contingencies: str = "auto"
    contingency_kv_min: float = 230.0
    emergency_rating: str = "B"
    hosting_map: bool = False
    hosting_buses: tuple[int, ...] = ()
    policy: str = "pro-rata"
    demand_response_mw: float = 0.0
    voltage_reduction_percent: float = 0.0
    max_curtail_hours: float = 4.0
    backup_max_hours: float = 4.0
    large_load_min_mw: float = 75.0
    zone_shares: object = ""  # "" | path | dict zone -> share
    block_mw: float = 15.0
    critical_percent: object = 10.0  # float or dict zone -> %
    ufls_percent: object = 25.0
    critical_buses: tuple[int, ...] = ()
    max_hours_dark: float = 2.0
    cold_load_pickup_percent: float = 0.0
    given: frozenset = field(default_factory=frozenset)  # keys the scenario set explicitly

    @property
    def n_intervals_per_hour(self) -> int:
        return 60 // self.interval_minutes


@dataclass(frozen=True)
class Scenario:
    source: str
    zones: str | None
    datacenters: tuple[Datacenter, ...]
    study: StudyOptions
    name: str = "study"
    path: str | None = None  # the file it was read from (relative paths in it are relative to its folder)

    def with_policy(self, policy: str) -> Scenario:
        _check_policy(policy, "policy")
        return replace(self, study=replace(self.study, policy=policy))

    def with_options(self, **changes) -> Scenario:
        """The scenario with some [study] options changed (no checks: for sensitivity runs)."""
        return replace(self, study=replace(self.study, **changes))

    def resolve(self, p: str) -> Path:
        """A path written in the scenario, relative to its file's folder."""
        q = Path(p)
        if not q.is_absolute() and self.path is not None:
            q = Path(self.path).parent / q
        return q


DEFAULT_SCENARIO = "pjm_summer_peak"


def default_scenario() -> Scenario:
    """The embedded default (``cases/scenarios/pjm_summer_peak.toml``)."""
    from gridflow.data import data_path

    return load_scenario(data_path("cases", "scenarios", f"{DEFAULT_SCENARIO}.toml"))


def read_toml(path: str | Path, what: str = "scenario file") -> dict:
    """The parsed TOML file ``path``; ScenarioError (one line, naming the file) when it cannot be read or
    parsed."""
    src = str(path)
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ScenarioError(f"{src}: no such file") from None
    except IsADirectoryError:
        raise ScenarioError(f"{src}: is a directory, not a {what}") from None
    except OSError as e:
        raise ScenarioError(f"{src}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{src}: not a text file") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{src}: not valid TOML ({' '.join(str(e).split())})") from None


def load_scenario(path: str | Path) -> Scenario:
    """Read a TOML scenario file."""
    path = Path(path)
    doc = read_toml(path)
    return scenario_from_dict(doc, str(path), name=path.stem.replace("_", " "), path=str(path))


def scenario_from_dict(doc: dict, src: str = "scenario", name: str = "study", path: str | None = None) -> Scenario:
    """Build and check a :class:`Scenario` from the parsed TOML (also usable from Python)."""
    unknown = set(doc) - {"case", "datacenter", "study"}
    if unknown:
        raise ScenarioError(f"{src}: unknown section [{sorted(unknown)[0]}] (expected case, datacenter, study)")
    case = doc.get("case", {})
    if not isinstance(case, dict) or "source" not in case:
        raise ScenarioError(f"{src}: [case] needs source = \"<case name or file>\"")
    _only(case, {k.name for k in CASE_KEYS}, src, "[case]")
    dcs = doc.get("datacenter", [])
    if not isinstance(dcs, list):
        raise ScenarioError(f"{src}: datacenters are written [[datacenter]] (a list of tables)")
    datacenters = tuple(_datacenter(d, src, i) for i, d in enumerate(dcs))
    names = [d.name for d in datacenters]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ScenarioError(f"{src}: two datacenters are named {dup!r}")
    study = doc.get("study", {})
    if not isinstance(study, dict):
        raise ScenarioError(f"{src}: [study] must be a table")
    _only(study, {k.name for k in STUDY_KEYS}, src, "[study]")
    opts = _study(study, src)
    zones = case.get("zones")
    if zones is not None and not isinstance(zones, str):
        raise ScenarioError(f"{src}: [case] zones must be a zone map name or a CSV path")
    return Scenario(source=str(case["source"]), zones=zones, datacenters=datacenters, study=opts, name=name,
                    path=path)


# ------------------------------------------------------------------------------------------------- checks

def _only(table: dict, allowed: set, src: str, where: str):
    extra = set(table) - allowed
    if extra:
        k = sorted(extra)[0]
        hint = f" ({NETWORK_REMOVED})" if k == "network" else ""
        renamed = {"feeder_mw": "block_mw", "zone_ratio": "zone_shares"}
        if k in renamed:
            hint = f" (renamed {renamed[k]!r})"
        raise ScenarioError(f"{src}: {where} has unknown key {k!r}{hint}; allowed: {', '.join(sorted(allowed))}")


def _number(v, src, key, *, lo=None, hi=None, lo_open=False):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ScenarioError(f"{src}: {key} must be a number, got {v!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ScenarioError(f"{src}: {key} must be {'>' if lo_open else '>='} {lo}, got {v}")
    if hi is not None and v > hi:
        raise ScenarioError(f"{src}: {key} must be <= {hi}, got {v}")
    return float(v)


def _bool(v, src, key) -> bool:
    if not isinstance(v, bool):
        raise ScenarioError(f"{src}: {key} must be true or false, got {v!r}")
    return v


def _shape24(v, src, key) -> tuple[float, ...]:
    if not isinstance(v, list) or len(v) != 24:
        n = len(v) if isinstance(v, list) else "not a list"
        raise ScenarioError(f"{src}: {key} must be 24 hourly multipliers (got {n})")
    return tuple(_number(x, src, f"{key}[{i}]", lo=0) for i, x in enumerate(v))


def _datacenter(d: dict, src: str, i: int) -> Datacenter:
    where = f"[[datacenter]] #{i + 1}"
    if not isinstance(d, dict):
        raise ScenarioError(f"{src}: {where} must be a table")
    _only(d, {k.name for k in DATACENTER_KEYS}, src, where)
    name = str(d.get("name", f"datacenter {i + 1}"))
    where = f"datacenter {name!r}"
    if "mw" not in d:
        raise ScenarioError(f"{src}: {where} needs mw")
    mw = _number(d["mw"], src, f"{where} mw", lo=0)
    pf = _number(d.get("power_factor", 0.98), src, f"{where} power_factor", lo=0, hi=1, lo_open=True)
    flex = _number(d.get("flexible_share", 0.0), src, f"{where} flexible_share", lo=0, hi=1)
    backup = _number(d.get("backup_share", 0.0), src, f"{where} backup_share", lo=0, hi=1)
    if flex + backup > 1 + 1e-12:
        raise ScenarioError(f"{src}: {where} flexible_share + backup_share is {flex + backup:g}, more than the site")
    places = [k for k in ("buses", "zone", "state", "area") if k in d]
    if len(places) != 1:
        raise ScenarioError(f"{src}: {where} needs exactly one of buses, zone, state, area (got {places or 'none'})")
    buses = None
    if "buses" in d:
        b = d["buses"]
        if not isinstance(b, list) or not b or not all(isinstance(x, int) and not isinstance(x, bool) for x in b):
            raise ScenarioError(f"{src}: {where} buses must be a non-empty list of bus numbers")
        if len(set(b)) != len(b):
            raise ScenarioError(f"{src}: {where} lists bus {next(x for x in b if b.count(x) > 1)} twice")
        buses = tuple(b)
    area = d.get("area")
    if area is not None and (isinstance(area, bool) or not isinstance(area, int)):
        raise ScenarioError(f"{src}: {where} area must be an integer")
    for k in ("zone", "state"):
        if k in d and not isinstance(d[k], str):
            raise ScenarioError(f"{src}: {where} {k} must be a string")
    shape = d.get("load_shape", "flat")
    if shape == "flat":
        shape = None
    elif isinstance(shape, str):
        raise ScenarioError(f"{src}: {where} load_shape must be \"flat\" or 24 hourly multipliers, got {shape!r}")
    else:
        shape = _shape24(shape, src, f"{where} load_shape")
    return Datacenter(name=name, mw=mw, zone=d.get("zone"), state=d.get("state"), area=area, buses=buses,
                      power_factor=pf, flexible_share=flex, backup_share=backup, load_shape=shape)


def _check_policy(policy, src):
    if policy == "network":
        raise ScenarioError(f"{src}: {NETWORK_REMOVED}")
    if policy not in POLICIES:
        raise ScenarioError(f"{src}: unknown policy {policy!r}; choose from {', '.join(POLICIES)}")


def _percent_or_table(v, src, key):
    if isinstance(v, dict):
        return {str(z): _number(x, src, f"{key} {z!r}", lo=0, hi=100) for z, x in v.items()}
    return _number(v, src, key, lo=0, hi=100)


def _load_shape(v, src):
    if isinstance(v, str):
        if v not in SHAPES:
            raise ScenarioError(f"{src}: load_shape {v!r} is not a built-in shape ({', '.join(SHAPES)}); or give 24 "
                                "multipliers")
        return v
    if isinstance(v, dict):
        if not v:
            raise ScenarioError(f"{src}: load_shape table is empty")
        return {str(z): _shape24(x, src, f"load_shape {z!r}") for z, x in v.items()}
    return _shape24(v, src, "load_shape")


def _hours(v, src):
    if isinstance(v, list):
        if len(v) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            raise ScenarioError(f"{src}: hours must be N or [start, end) in whole hours, got {v!r}")
        a, b = v
        if not 0 <= a < b <= 24:
            raise ScenarioError(f"{src}: hours [{a}, {b}) must lie within the day, 0 <= start < end <= 24")
        return (a, b)
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 24:
        raise ScenarioError(f"{src}: hours must be a whole number of hours from 1 to 24, or [start, end), got {v!r}")
    return v


def _zone_shares(v, src):
    if isinstance(v, str):
        return v
    if isinstance(v, dict):
        if not v:
            raise ScenarioError(f"{src}: zone_shares table is empty")
        return {str(z): _number(x, src, f"zone_shares {z!r}", lo=0, hi=1) for z, x in v.items()}
    raise ScenarioError(f"{src}: zone_shares must be \"\", a CSV path or a table zone = share, got {v!r}")


def _study(s: dict, src: str) -> StudyOptions:
    d = {k.name: k.default for k in STUDY_KEYS}
    d.update(s)
    _check_policy(d["policy"], src)
    rating = str(d["rating"]).upper()
    if rating not in RATINGS:
        raise ScenarioError(f"{src}: rating must be A, B or C, got {d['rating']!r}")
    emergency = str(d["emergency_rating"]).upper()
    if emergency not in ("B", "C"):
        raise ScenarioError(f"{src}: emergency_rating must be B or C, got {d['emergency_rating']!r}")
    interval = d["interval_minutes"]
    if isinstance(interval, bool) or not isinstance(interval, int) or not 10 <= interval <= 60 or 60 % interval:
        raise ScenarioError(f"{src}: interval_minutes must be a whole number of minutes from 10 to 60 that divides "
                            f"an hour (10, 12, 15, 20, 30, 60), got {interval!r}")
    cap = _number(d["max_hours_dark"], src, "max_hours_dark", lo=0, lo_open=True)
    if cap * 60 < interval:
        raise ScenarioError(f"{src}: max_hours_dark ({cap:g} h) is shorter than one interval ({interval} minutes)")
    crit = d["critical_buses"]
    if not isinstance(crit, list) or not all(isinstance(b, int) and not isinstance(b, bool) for b in crit):
        raise ScenarioError(f"{src}: critical_buses must be a list of bus numbers")
    steps = d["steps_mw"]
    if not isinstance(steps, list):
        raise ScenarioError(f"{src}: steps_mw must be a list of MW totals")
    steps = tuple(_number(v, src, "steps_mw", lo=0) for v in steps)
    if d["interchange"] != "fixed":
        raise ScenarioError(f"{src}: interchange must be \"fixed\" (other footprints keep their base-case dispatch; "
                            f"emergency_import_mw says what they may add), got {d['interchange']!r}")
    footprint = d["footprint"]
    if not isinstance(footprint, str):
        raise ScenarioError(f"{src}: footprint must be an RTO name of the zone map, \"\" or \"all\"")
    cont = d["contingencies"]
    if not isinstance(cont, str):
        raise ScenarioError(f"{src}: contingencies must be \"none\", \"auto\" or a change-table path")
    hosting = _bool(d["hosting_map"], src, "hosting_map")
    hbuses = d["hosting_buses"]
    if not isinstance(hbuses, list) or not all(isinstance(b, int) and not isinstance(b, bool) for b in hbuses):
        raise ScenarioError(f"{src}: hosting_buses must be a list of bus numbers")
    crit_pct = _percent_or_table(d["critical_percent"], src, "critical_percent")
    ufls_pct = _percent_or_table(d["ufls_percent"], src, "ufls_percent")
    if not isinstance(crit_pct, dict) and not isinstance(ufls_pct, dict) and crit_pct + ufls_pct >= 100:
        raise ScenarioError(f"{src}: critical_percent + ufls_percent is {crit_pct + ufls_pct:g} %: nothing left to "
                            "rotate")
    return StudyOptions(
        footprint=footprint, interchange="fixed",
        emergency_import_mw=_number(d["emergency_import_mw"], src, "emergency_import_mw", lo=0),
        reserve_mw=_number(d["reserve_mw"], src, "reserve_mw", lo=0),
        unavailable_mw=_number(d["unavailable_mw"], src, "unavailable_mw", lo=0),
        q_limits=_bool(d["q_limits"], src, "q_limits"),
        load_shape=_load_shape(d["load_shape"], src), interval_minutes=interval, hours=_hours(d["hours"], src),
        steps_mw=steps, rating=rating,
        monitored_kv_min=_number(d["monitored_kv_min"], src, "monitored_kv_min", lo=0),
        dfax_cutoff_percent=_number(d["dfax_cutoff_percent"], src, "dfax_cutoff_percent", lo=0, hi=100),
        loading_tolerance_percent=_number(d["loading_tolerance_percent"], src, "loading_tolerance_percent", lo=0),
        voltage_tolerance_pu=_number(d["voltage_tolerance_pu"], src, "voltage_tolerance_pu", lo=0, hi=0.1),
        voltage_stability_margin_percent=_number(d["voltage_stability_margin_percent"], src,
                                                 "voltage_stability_margin_percent", lo=0, hi=50),
        limit_tolerance_mw=_number(d["limit_tolerance_mw"], src, "limit_tolerance_mw", lo=1),
        contingencies=cont, contingency_kv_min=_number(d["contingency_kv_min"], src, "contingency_kv_min", lo=0),
        emergency_rating=emergency, hosting_map=hosting, hosting_buses=tuple(hbuses), policy=d["policy"],
        demand_response_mw=_number(d["demand_response_mw"], src, "demand_response_mw", lo=0),
        voltage_reduction_percent=_number(d["voltage_reduction_percent"], src, "voltage_reduction_percent", lo=0,
                                          hi=10),
        max_curtail_hours=_number(d["max_curtail_hours"], src, "max_curtail_hours", lo=0, hi=24),
        backup_max_hours=_number(d["backup_max_hours"], src, "backup_max_hours", lo=0, hi=24),
        large_load_min_mw=_number(d["large_load_min_mw"], src, "large_load_min_mw", lo=0),
        zone_shares=_zone_shares(d["zone_shares"], src),
        block_mw=_number(d["block_mw"], src, "block_mw", lo=0, lo_open=True),
        critical_percent=crit_pct, ufls_percent=ufls_pct, critical_buses=tuple(crit), max_hours_dark=cap,
        cold_load_pickup_percent=_number(d["cold_load_pickup_percent"], src, "cold_load_pickup_percent", lo=0,
                                         hi=200),
        given=frozenset(s),
    )


# ------------------------------------------------------------------------------------------------- template

def _toml(v) -> str:
    if v is None:
        return '""'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, float) and v == int(v):
        return f"{v:.1f}" if abs(v) < 1e15 else repr(v)
    return repr(v) if not isinstance(v, list) else "[" + ", ".join(_toml(x) for x in v) + "]"


def _line(k: Key, value=None, *, commented=False) -> str:
    text = f"{k.name} = {_toml(k.default if value is None else value)}"
    return f"{'# ' if commented else ''}{text:<40s} # {k.doc}"


def template() -> str:
    """A complete commented scenario: every key with its default (``gridflow study --template``)."""
    out = ["# gridflow study scenario: every key with its default. Run: gridflow study THIS.toml",
           "", "[case]"]
    out += [_line(k) for k in CASE_KEYS]
    out += ["", "# one table per new large load, in interconnection-queue order (each one's limit is found with the",
            "# earlier ones at theirs); give exactly one of buses, zone, state, area", "[[datacenter]]"]
    for k in DATACENTER_KEYS:
        if k.name == "buses":
            out.append(_line(k, [63232, 63130]))
        elif k.name in ("zone", "state", "area"):
            out.append(_line(k, {"zone": "Northern Virginia", "state": "VA", "area": 63}[k.name], commented=True))
        elif k.name == "mw":
            out.append(_line(k, 1000.0))
        else:
            out.append(_line(k))
    out += ["", "[study]"]
    groups = {"footprint": "footprint and interchange", "load_shape": "the day", "rating": "network limits (N-0)",
              "contingencies": "N-1 (NERC TPL-001 P1): screened with LODFs, the screened ones solved in AC",
              "policy": "the emergency ladder, in order: demand response, voltage reduction, emergency import, "
                        "datacenter flexible share, datacenter backup, firm load",
              "zone_shares": "firm shed: zone obligations and rotation"}
    for k in STUDY_KEYS:
        if k.name in groups:
            out += ["", f"# --- {groups[k.name]}"]
        out.append(_line(k))
    return "\n".join(out) + "\n"


def options_table(opts: StudyOptions) -> list[tuple[str, object]]:
    """(key, value) of every [study] option, for reports."""
    return [(f.name, getattr(opts, f.name)) for f in fields(opts) if f.name != "given"]
