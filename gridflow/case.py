"""The Case: an immutable network in per-unit arrays.

Every reader (MATPOWER ``.m``, pandapower) produces a :class:`Case`; every
what-if (added datacenter load, shed, redispatch) produces a new one with
:meth:`Case.replace`. The solver reads nothing else.

Conventions (as MATPOWER, but per-unit inside):

* powers in per-unit on ``base_mva`` (``pd = 1.5`` is 150 MW on a 100 MVA base);
* voltage magnitudes in pu, angles in **radians**;
* impedances in pu on ``base_mva`` and the bus base kV;
* element indices (``gen.bus``, ``branch.f``, ``branch.t``) are 0-based
  positions in the bus arrays; ``bus.number`` keeps the case's own bus numbers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from gridflow.errors import CaseError

PQ, PV, REF, NONE = 1, 2, 3, 4  # MATPOWER bus types


def _frozen(a, dtype) -> np.ndarray:
    out = np.array(a, dtype=dtype, copy=True)
    out.flags.writeable = False
    return out


@dataclass(frozen=True)
class Buses:
    """Bus data, one entry per bus (nb)."""

    number: np.ndarray  # int64, the case's own bus numbers
    type: np.ndarray  # int8, PQ=1 PV=2 REF=3 NONE=4 (as given by the case)
    pd: np.ndarray  # float64 pu, constant-power load P
    qd: np.ndarray  # float64 pu, constant-power load Q
    gs: np.ndarray  # float64 pu, shunt conductance (P consumed at V = 1 pu)
    bs: np.ndarray  # float64 pu, shunt susceptance (Q injected at V = 1 pu)
    area: np.ndarray  # int64
    zone: np.ndarray  # int64
    vm: np.ndarray  # float64 pu, stored voltage magnitude
    va: np.ndarray  # float64 rad, stored voltage angle
    base_kv: np.ndarray  # float64 kV
    vmax: np.ndarray  # float64 pu
    vmin: np.ndarray  # float64 pu
    name: np.ndarray  # object (str), '' where the case gives none

    def __len__(self) -> int:
        return len(self.number)


@dataclass(frozen=True)
class Gens:
    """Generator data, one entry per generator (ng)."""

    bus: np.ndarray  # int64, 0-based bus index
    pg: np.ndarray  # float64 pu
    qg: np.ndarray  # float64 pu
    qmax: np.ndarray  # float64 pu
    qmin: np.ndarray  # float64 pu
    vg: np.ndarray  # float64 pu, voltage setpoint
    status: np.ndarray  # bool, in service
    pmax: np.ndarray  # float64 pu
    pmin: np.ndarray  # float64 pu
    slack_weight: np.ndarray | None = None  # float64, distributed-slack participation (pandapower); default 0

    def __post_init__(self):
        if self.slack_weight is None:
            object.__setattr__(self, "slack_weight", _frozen(np.zeros(len(self.bus)), np.float64))

    def __len__(self) -> int:
        return len(self.bus)


@dataclass(frozen=True)
class Branches:
    """Branch data (lines and transformers), one entry per branch (nl)."""

    f: np.ndarray  # int64, 0-based from-bus index
    t: np.ndarray  # int64, 0-based to-bus index
    r: np.ndarray  # float64 pu
    x: np.ndarray  # float64 pu
    b: np.ndarray  # float64 pu, total line charging susceptance
    rate_a: np.ndarray  # float64 pu MVA (0 = unrated: not monitored)
    rate_b: np.ndarray  # float64 pu MVA
    rate_c: np.ndarray  # float64 pu MVA
    tap: np.ndarray  # float64, off-nominal ratio at the from side (1.0 for lines)
    shift: np.ndarray  # float64 rad, phase shift at the from side
    status: np.ndarray  # bool, in service
    g: np.ndarray | None = None  # float64 pu, total charging conductance (pandapower), default 0
    r_asym: np.ndarray | None = None  # float64 pu, extra series r on the to side (pandapower impedances)
    x_asym: np.ndarray | None = None  # float64 pu, extra series x on the to side
    g_asym: np.ndarray | None = None  # float64 pu, extra charging g on the to side
    b_asym: np.ndarray | None = None  # float64 pu, extra charging b on the to side
    # what a rating means (see gridflow.results.loading_percent). MATPOWER (the defaults): |S| at each end over
    # rate A/B/C. pandapower nets: a current rating, |S|/|V| at an end over the rate (MVA at 1 pu) times that end's
    # scale (rated current at that end's base kV); a scale of 0 leaves that end unmonitored (3-winding trafos).
    rate_current: np.ndarray | None = None  # bool, True: the ratings are current ratings (default False)
    rate_scale_f: np.ndarray | None = None  # float64, the from end's rating over rate A/B/C (default 1)
    rate_scale_t: np.ndarray | None = None  # float64, the to end's rating over rate A/B/C (default 1)

    def __post_init__(self):
        for name in ("g", "r_asym", "x_asym", "g_asym", "b_asym"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, _frozen(np.zeros(len(self.f)), np.float64))
        for name in ("rate_scale_f", "rate_scale_t"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, _frozen(np.ones(len(self.f)), np.float64))
        if self.rate_current is None:
            object.__setattr__(self, "rate_current", _frozen(np.zeros(len(self.f)), bool))

    def __len__(self) -> int:
        return len(self.f)


_BUS_DTYPES = dict(number=np.int64, type=np.int8, area=np.int64, zone=np.int64, name=object)
_GEN_DTYPES = dict(bus=np.int64, status=bool)
_BRANCH_DTYPES = dict(f=np.int64, t=np.int64, status=bool, rate_current=bool)


def _make(cls, dtypes, **arrays):
    return cls(**{k: _frozen(v, dtypes.get(k, np.float64)) for k, v in arrays.items() if v is not None})


def make_buses(**arrays) -> Buses:
    return _make(Buses, _BUS_DTYPES, **arrays)


def make_gens(**arrays) -> Gens:
    return _make(Gens, _GEN_DTYPES, **arrays)


def make_branches(**arrays) -> Branches:
    return _make(Branches, _BRANCH_DTYPES, **arrays)


@dataclass(frozen=True, eq=False)
class Case:
    """An immutable power network in per-unit arrays.

    Attributes
    ----------
    name : str
        Where the case came from (file stem or case name).
    base_mva : float
        System MVA base.
    bus, gen, branch : Buses, Gens, Branches
        Element data; see the field comments of each class for units.
    meta : dict
        Reader-specific extras (e.g. the pandapower bus lookup), never used
        by the solver.
    """

    name: str
    base_mva: float
    bus: Buses
    gen: Gens
    branch: Branches
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def nb(self) -> int:
        return len(self.bus)

    @property
    def ng(self) -> int:
        return len(self.gen)

    @property
    def nl(self) -> int:
        return len(self.branch)

    def bus_index(self, numbers) -> np.ndarray:
        """0-based bus positions for the case's own bus numbers; unknown numbers raise."""
        numbers = np.atleast_1d(np.asarray(numbers, dtype=np.int64))
        order = np.argsort(self.bus.number, kind="stable")
        pos = np.searchsorted(self.bus.number, numbers, sorter=order)
        pos = np.minimum(pos, len(order) - 1)
        idx = order[pos]
        bad = self.bus.number[idx] != numbers
        if bad.any():
            raise CaseError(f"unknown bus {int(numbers[bad][0])} in case {self.name}")
        return idx

    def replace(self, *, bus: dict | None = None, gen: dict | None = None,
                branch: dict | None = None, **fields) -> Case:
        """A new Case with some arrays replaced, e.g. ``case.replace(bus={"pd": pd})``."""
        new = dict(fields)
        if bus:
            new["bus"] = _make(Buses, _BUS_DTYPES, **{**_asdict(self.bus), **bus})
        if gen:
            new["gen"] = _make(Gens, _GEN_DTYPES, **{**_asdict(self.gen), **gen})
        if branch:
            new["branch"] = _make(Branches, _BRANCH_DTYPES, **{**_asdict(self.branch), **branch})
        return dataclasses.replace(self, **new)

    def to_matpower(self, path):
        """Write the case as a MATPOWER ``.m`` file (:func:`gridflow.io.matpower_write.write_matpower`)."""
        from gridflow.io.matpower_write import write_matpower

        return write_matpower(self, path)

    def to_psse(self, path):
        """Write the case as a PSS/E RAW version-33 file (:func:`gridflow.io.psse_write.write_psse`)."""
        from gridflow.io.psse_write import write_psse

        return write_psse(self, path)

    def total_load_mw(self) -> float:
        """Total constant-power load P of the case, MW."""
        return float(self.bus.pd.sum() * self.base_mva)


def _asdict(obj) -> dict:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def check_case(case: Case, source: str | None = None) -> None:
    """Raise :class:`CaseError` for data no power flow can use.

    Checks: array lengths, non-finite numbers, duplicate bus numbers, bus
    types, base kV, branch and generator ends out of range, zero-impedance
    branches, zero tap ratios, the voltage setpoints of in-service generators
    at PV and ref buses (the only ones used), Qmin above Qmax at an in-service
    generator, magnitudes no power system has (|P|, |Q|, |r|, |x|, |b| above 1e6
    pu, |V| above 10 pu...), base MVA and a slack bus with an in-service generator.
    """
    src = source or case.name
    if not np.isfinite(case.base_mva) or case.base_mva <= 0:
        raise CaseError(f"baseMVA must be a positive number, got {case.base_mva}", source=src)
    if case.nb == 0:
        raise CaseError("the case has no buses", source=src)
    for group_name, group in (("bus", case.bus), ("gen", case.gen), ("branch", case.branch)):
        n = len(group)
        for f in dataclasses.fields(group):
            a = getattr(group, f.name)
            if a.ndim != 1 or len(a) != n:
                raise CaseError(f"{group_name}.{f.name} has shape {a.shape}, expected ({n},) like "
                                f"{group_name}.{dataclasses.fields(group)[0].name}", source=src)
    nb = case.nb
    for group_name, group, names in (("gen", case.gen, ("bus",)), ("branch", case.branch, ("f", "t"))):
        for f in names:
            a = getattr(group, f)
            bad = (a < 0) | (a >= nb)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise CaseError(f"{group_name} {i}: {f} = {int(a[i])} is not a bus position (0..{nb - 1})",
                                source=src)
    for group_name, group in (("bus", case.bus), ("gen", case.gen), ("branch", case.branch)):
        for f in dataclasses.fields(group):
            a = getattr(group, f.name)
            if a.dtype.kind == "f":
                bad = ~np.isfinite(a)
                # MATPOWER uses +-Inf for unlimited Q/P limits and ratings; allow those.
                if f.name in ("qmax", "qmin", "pmax", "pmin", "rate_a", "rate_b", "rate_c", "vmax", "vmin"):
                    bad = np.isnan(a)
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    label = _label(case, group_name, i)
                    raise CaseError(f"{group_name} {label}: {f.name} is {a[i]} (not a finite number)", source=src)
    for group_name, group, limits in (("bus", case.bus, _BUS_LIMITS), ("gen", case.gen, _GEN_LIMITS),
                                      ("branch", case.branch, _BRANCH_LIMITS)):
        for fname, (lim, unit) in limits.items():
            a = getattr(group, fname)
            if group_name == "gen" and fname == "vg":  # only where used (in-service, PV and ref buses)
                a = np.where(group.status & np.isin(case.bus.type[group.bus], (PV, REF)), a, 0.0)
            bad = np.abs(a) > lim
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise CaseError(f"{group_name} {_label(case, group_name, i)}: {fname} = {a[i]:g} {unit} is beyond "
                                f"+-{lim:g} {unit}, no power system value (a unit or typing error?)", source=src)
    num, counts = np.unique(case.bus.number, return_counts=True)
    if (counts > 1).any():
        raise CaseError(f"duplicate bus number {int(num[counts > 1][0])}", source=src)
    bad = ~np.isin(case.bus.type, (PQ, PV, REF, NONE))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CaseError(f"bus {int(case.bus.number[i])}: bus type {int(case.bus.type[i])} is not 1 (PQ), 2 (PV), "
                        "3 (ref) or 4 (isolated)", source=src)
    i, why = base_kv_problem(case.bus.base_kv)
    if i is not None:
        raise CaseError(f"bus {int(case.bus.number[i])}: {why}", source=src)
    br = case.branch
    zero = br.status & (br.r == 0) & (br.x == 0)
    if zero.any():
        i = int(np.flatnonzero(zero)[0])
        raise CaseError(f"branch {i} ({_label(case, 'branch', i)}): zero impedance (r = x = 0)", source=src)
    bad = br.status & (br.tap <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CaseError(f"branch {i} ({_label(case, 'branch', i)}): tap ratio must be positive, got {br.tap[i]:g} "
                        "(1 for lines)", source=src)
    g = case.gen
    # a setpoint is used only where it regulates: in-service generators at PV and ref buses (MATPOWER and
    # pandapower ignore Vg at a PQ bus, so any value there, 0 included, is accepted)
    regulating = g.status & np.isin(case.bus.type[g.bus], (PV, REF))
    bad = regulating & ~(g.vg > 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CaseError(f"gen {_label(case, 'gen', i)}: voltage setpoint must be positive, got {g.vg[i]:g} pu",
                        source=src)
    bad = g.status & (g.qmin > g.qmax)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CaseError(f"gen {_label(case, 'gen', i)}: Qmin {g.qmin[i] * case.base_mva:g} MVAr is above Qmax "
                        f"{g.qmax[i] * case.base_mva:g} MVAr", source=src)
    _check_slack(case, src)


def setpoint_conflicts(case: Case, vg: np.ndarray | None = None) -> list[tuple[int, np.ndarray, float]]:
    """Buses where in-service generators hold different voltage setpoints.

    Returns (bus position, the setpoints in generator order, the one used) for
    every PV or ref bus with two or more in-service generators whose ``vg``
    differ (``vg``: default ``case.gen.vg``). The one used is the last
    generator's, as in MATPOWER's and PYPOWER's ``runpf``, which write every
    generator's setpoint into the start voltage in generator order
    (``V0[gbus] = gen[on, VG] ...``). pandapower refuses such a net.
    """
    g = case.gen
    vg = g.vg if vg is None else np.asarray(vg, dtype=np.float64)
    on = np.flatnonzero(g.status & np.isin(case.bus.type[g.bus], (PV, REF)))
    if len(on) < 2:
        return []
    order = np.argsort(g.bus[on], kind="stable")
    buses, first = np.unique(g.bus[on][order], return_index=True)
    out = []
    for b, idx in zip(buses, np.split(on[order], first[1:]), strict=True):
        v = vg[idx]
        if len(idx) > 1 and np.ptp(v) > 0:
            out.append((int(b), v, float(v[-1])))
    return out


def warn_setpoint_conflicts(case: Case, source: str | None = None, vg: np.ndarray | None = None) -> None:
    """One warning (``warnings.warn``) naming the buses of :func:`setpoint_conflicts`, if any."""
    import warnings

    conflicts = setpoint_conflicts(case, vg)
    if not conflicts:
        return
    b, v, used = conflicts[0]
    more = f" and {len(conflicts) - 1} more buses" if len(conflicts) > 1 else ""
    warnings.warn(f"{source or case.name}: bus {int(case.bus.number[b])}{more}: in-service generators with "
                  f"different voltage setpoints ({', '.join(f'{x:g}' for x in v)} pu); the last generator's "
                  f"({used:g} pu) is used, as MATPOWER and PYPOWER do", UserWarning, stacklevel=3)


# magnitudes no power system has (real cases stay below 1e4 pu, 1.3 pu, 2 rad...): refused, so that a typo or
# a unit error (kV for pu, 1e308) is reported instead of overflowing the solver's arithmetic
_PU = (1e6, "pu")
_BUS_LIMITS = {"pd": _PU, "qd": _PU, "gs": _PU, "bs": _PU, "vm": (10.0, "pu"), "va": (1e3, "rad")}
_GEN_LIMITS = {"pg": _PU, "qg": _PU, "vg": (10.0, "pu")}
_BRANCH_LIMITS = {"r": _PU, "x": _PU, "b": _PU, "g": _PU, "r_asym": _PU, "x_asym": _PU, "g_asym": _PU,
                  "b_asym": _PU, "tap": (100.0, ""), "shift": (1e3, "rad")}


def _check_slack(case: Case, src: str) -> None:
    ref = np.flatnonzero(case.bus.type == REF)
    if len(ref) == 0:
        raise CaseError("no slack bus: no bus has type 3 (ref)", source=src)
    g = case.gen
    if not np.isin(ref, g.bus[g.status]).any():
        buses = ", ".join(str(int(b)) for b in case.bus.number[ref[:5]]) + (", ..." if len(ref) > 5 else "")
        raise CaseError(f"no slack bus: no in-service generator at the ref bus(es) {buses}", source=src)


def base_kv_problem(base_kv: np.ndarray) -> tuple[int | None, str]:
    """(first bad position, why) for base kV values, or (None, "").

    Negative base kV is always wrong. Zero is MATPOWER's "not given" (case14,
    case57 give no base kV at all; the power flow in per unit does not use it),
    so a case whose base kVs are all zero is accepted; a zero among positive
    values is an error.
    """
    base_kv = np.asarray(base_kv, dtype=np.float64)
    bad = base_kv < 0
    if not bad.any() and (base_kv > 0).any():
        bad = base_kv == 0
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        return i, f"base kV must be positive, got {base_kv[i]:g}"
    return None, ""


def _label(case: Case, group: str, i: int) -> str:
    if group == "bus":
        return str(int(case.bus.number[i]))
    if group == "gen":
        return f"{i} at bus {int(case.bus.number[case.gen.bus[i]])}"
    return f"{int(case.bus.number[case.branch.f[i]])}-{int(case.bus.number[case.branch.t[i]])}"
