"""Read PSS/E, CGMES, UCTE and IIDM cases through pypowsybl (the ``formats`` extra).

Reading these formats is not what gridflow exists for: pypowsybl (LF Energy
PowSyBl) parses the file into its IIDM network model, and this module converts
that model into a :class:`~gridflow.case.Case` exactly, i.e. with the same
equations PowSyBl's own AC load flow (OpenLoadFlow) writes for it:

* **buses**: IIDM's bus view (buses joined by closed switches are one bus);
  PSS/E bus numbers and names are kept (bus-breaker buses ``B<number>``; where
  switches merge several, the lowest number names the bus and
  ``meta["merged_buses"]`` lists the others). Other formats number buses
  1..nb in file order and keep the IIDM ids in ``meta["bus_ids"]``. Voltages
  are in pu of each voltage level's nominal kV (the bus base kV).
* **branches** (OpenLoadFlow's pi model, per unit on 100 MVA and the side-2
  nominal kV): lines ``r, x, g1, b1, g2, b2``; two-winding transformers at
  their current tap (ratio ``rho``, angle ``alpha``, impedance and
  magnetizing admittance at the tap, PSS/E impedance-correction tables
  already applied by the library): gridflow's ``tap = Vnom2 / (rho Vnom1)``,
  ``shift = -alpha``; three-winding transformers as three legs to a star bus
  (base kV ``rated_u0``, numbered after the case's buses,
  ``meta["star_buses"]``). Magnetizing admittance sits at the side-1 end of
  the pi (``g_asym``/``b_asym`` take it off side 2). A branch connected at one
  end only becomes the shunt it is to the connected bus.
* **injections**: loads at ``p0, q0`` (constant power); fixed and switched
  shunts at their current section; generators at ``target_p``; a generator
  that regulates voltage makes its bus PV with ``target_v`` over the bus
  nominal kV, one that does not injects ``target_q``; Q limits are the
  library's limits at ``target_p`` (reactive capability curves included).
* **slack**: the bus of the file's slack terminal (PSS/E type-3 buses), else
  the bus of the voltage-regulating generator with the largest ``target_p``, which is
  what :func:`gridflow.validate.validate` also gives OpenLoadFlow.
* **areas, zones, owners**: PSS/E bus AREA/ZONE/OWNER numbers and their
  names from the file (:mod:`gridflow.io.psse_tables`); other formats number
  IIDM areas 1..n (``zone`` = ``area``). Names go to ``meta["area_names"]``,
  ``meta["zone_names"]``, ``meta["owner_names"]``.
* **PSS/E circuit ids** of every branch row: ``meta["branch_ckt"]`` with
  ``meta["branch_buses"]`` (from, to, third-winding bus or 0), for ``.con``
  contingency lists.

Refused, in one line naming the file and the element: loads with
constant-current or constant-admittance parts (PSS/E IP/IQ/YP/YQ),
generators regulating a remote bus (remote voltage control is not modelled),
several generators regulating one bus to different voltages, HVDC lines and
converter stations, static var compensators (FACTS), batteries, dangling
(boundary) lines and tie lines, a slack bus without a voltage-regulating
generator. Out-of-service elements stay in the case with status 0 (or are
absent, where IIDM drops them).

pypowsybl is imported only here and in :mod:`gridflow.validate`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from gridflow.case import NONE, PQ, PV, REF, Case, check_case, make_branches, make_buses, make_gens
from gridflow.errors import CaseError

SB = 100.0  # MVA: IIDM is in physical units; OpenLoadFlow's per-unit base
_BIG = 1e300  # IIDM writes "no limit" as +-Double.MAX_VALUE

# file suffix -> format label (what `gridflow cases` lists and `load_case` dispatches on)
SUFFIXES = {".raw": "PSS/E RAW", ".rawx": "PSS/E RAWX", ".uct": "UCTE-DEF", ".xiidm": "IIDM (XML)",
            ".iidm": "IIDM (XML)", ".jiidm": "IIDM (JSON)", ".biidm": "IIDM (binary)", ".zip": "CGMES (zip)",
            ".mat": "MATPOWER .mat", ".dgs": "PowerFactory DGS"}
INSTALL_HINT = "pip install 'gridflow[formats]' (installs pypowsybl)"


def available() -> bool:
    """True when pypowsybl can be imported."""
    import importlib.util

    return importlib.util.find_spec("pypowsybl") is not None


def import_pypowsybl(what: str = "this format"):
    """The ``pypowsybl.network`` module, or a one-line :class:`CaseError` saying what to install."""
    if not available():
        raise CaseError(f"reading {what} needs the optional extra: {INSTALL_HINT}")
    logger = logging.getLogger("powsybl")
    level = logger.level
    logger.setLevel(logging.ERROR)  # pypowsybl warns at import about its own 'opf' extra
    try:
        import pypowsybl.network as pn
    finally:
        logger.setLevel(level)
    return pn


def read_powsybl(path: str | Path) -> Case:
    """Read a case file through pypowsybl (see module doc for what is converted and refused).

    Parameters
    ----------
    path : str or Path
        ``.raw``/``.rawx`` (PSS/E 33-35), ``.uct``, ``.xiidm``/``.iidm``/``.jiidm``,
        CGMES ``.zip``, ...

    Returns
    -------
    Case
        Powers in pu on 100 MVA; ``meta`` carries the IIDM ids of buses,
        branches and generators, the slack buses, area/zone/owner names.

    Raises
    ------
    CaseError
        pypowsybl missing, the file unreadable by the library, or an element
        gridflow does not model (one line, naming it).
    """
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise CaseError("no such file", source=src)
    pn = import_pypowsybl(SUFFIXES.get(path.suffix.lower(), path.suffix or "this file"))
    try:
        network = pn.load(src)
    except Exception as e:  # pypowsybl raises PyPowsyblError with the Java message
        msg = " ".join(str(e).split())
        raise CaseError(f"pypowsybl could not read the file: {msg[:300]}", source=src) from None
    tables = None
    if path.suffix.lower() in (".raw", ".rawx"):
        from gridflow.io.psse_tables import read_psse_tables

        tables = read_psse_tables(path)
        if tables.zip_loads:
            b, lid, ip, iq, yp, yq, line = tables.zip_loads[0]
            more = f" (and {len(tables.zip_loads) - 1} more)" if len(tables.zip_loads) > 1 else ""
            raise CaseError(f"load {lid!r} at bus {b} has voltage-dependent parts (IP {ip:g}, IQ {iq:g}, YP {yp:g}, "
                            f"YQ {yq:g}){more}; gridflow models constant-power loads only", source=src, line=line)
    return from_powsybl(network, name=path.stem, source=src, tables=tables)


def from_powsybl(network, name: str | None = None, source: str | None = None, tables=None) -> Case:
    """A :class:`Case` from a ``pypowsybl.network.Network`` (not modified); see the module doc."""
    src = source or name or "network"
    name = name or getattr(network, "id", None) or "network"
    _refuse_unmodelled(network, src)
    bb = network.get_bus_breaker_view_buses(all_attributes=True)
    vl = network.get_voltage_levels(all_attributes=True)
    vnom_of_vl = vl["nominal_v"]
    # --- buses: the bus view, plus bus-breaker buses in no bus (isolated) ---
    bview = network.get_buses(all_attributes=True)
    psse_numbers = bool(len(bb)) and bool(bb.index.str.fullmatch(r"B\d+").all())
    ids = list(bview.index)
    vl_of = list(bview["voltage_level_id"])
    vmag, vang = list(bview["v_mag"]), list(bview["v_angle"])
    pos_of = {b: i for i, b in enumerate(ids)}
    # every bus-breaker bus -> case position (its bus-view bus, or a bus of its own when isolated)
    pos_of_bb = {bbid: pos_of[b] for bbid, b in zip(bb.index, bb["bus_id"], strict=True) if b}
    isolated = bb[bb["bus_id"] == ""]
    for bbid, row in isolated.iterrows():
        pos_of_bb[bbid] = len(ids)
        ids.append("")
        vl_of.append(row["voltage_level_id"])
        vmag.append(row["v_mag"])
        vang.append(row["v_angle"])
    names = [""] * len(ids)
    numbers = [0] * len(ids)
    merged = {}
    if psse_numbers:
        members: dict[int, list] = {}
        for bbid, nm in zip(bb.index, bb["name"], strict=True):
            members.setdefault(pos_of_bb[bbid], []).append((int(bbid[1:]), nm if isinstance(nm, str) else ""))
        for i, mem in members.items():
            mem.sort()
            numbers[i], names[i] = mem[0][0], mem[0][1].strip()
            if len(mem) > 1:
                merged[mem[0][0]] = [m[0] for m in mem[1:]]
    else:
        numbers = list(range(1, len(ids) + 1))
        nm_of = dict(zip(bview.index, bview["name"], strict=True))
        nm_of.update({bbid: row["name"] for bbid, row in isolated.iterrows()})
        keys = list(bview.index) + list(isolated.index)
        names = [nm_of[k] if isinstance(nm_of[k], str) and nm_of[k] else k for k in keys]
    nb0 = len(ids)
    vnom = vnom_of_vl.reindex(vl_of).to_numpy(float)
    vm = np.asarray(vmag, dtype=float) / vnom
    va = np.deg2rad(np.asarray(vang, dtype=float))
    vm = np.where(np.isfinite(vm) & (vm > 0), vm, 1.0)
    va = np.where(np.isfinite(va), va, 0.0)
    vhi = vl["high_voltage_limit"].reindex(vl_of).to_numpy(float) / vnom
    vlo = vl["low_voltage_limit"].reindex(vl_of).to_numpy(float) / vnom
    vmax = np.where(np.isnan(vhi), np.inf, vhi)
    vmin = np.where(np.isnan(vlo), 0.0, vlo)
    alive = np.array([b != "" for b in ids])

    pd_ = np.zeros(nb0)
    qd = np.zeros(nb0)
    gs = np.zeros(nb0)
    bs = np.zeros(nb0)
    fict_p = bview["fictitious_p0"].to_numpy(float) if "fictitious_p0" in bview else np.zeros(len(bview))
    fict_q = bview["fictitious_q0"].to_numpy(float) if "fictitious_q0" in bview else np.zeros(len(bview))
    pd_[: len(bview)] += np.nan_to_num(fict_p) / SB
    qd[: len(bview)] += np.nan_to_num(fict_q) / SB

    def pos(bus_ids):
        return np.array([pos_of.get(b, -1) if isinstance(b, str) and b else -1 for b in bus_ids], dtype=np.int64)

    # --- loads (constant power p0, q0) ---
    loads = network.get_loads(all_attributes=True)
    lp = pos(loads["bus_id"])
    on = lp >= 0
    np.add.at(pd_, lp[on], loads["p0"].to_numpy(float)[on] / SB)
    np.add.at(qd, lp[on], loads["q0"].to_numpy(float)[on] / SB)
    # --- shunts at their current section: admittance in S -> pu on the bus nominal kV ---
    sh = network.get_shunt_compensators(all_attributes=True)
    sp_ = pos(sh["bus_id"])
    on = sp_ >= 0
    np.add.at(gs, sp_[on], sh["g"].to_numpy(float)[on] * vnom[sp_[on]] ** 2 / SB)
    np.add.at(bs, sp_[on], sh["b"].to_numpy(float)[on] * vnom[sp_[on]] ** 2 / SB)

    # --- branches ---
    rows = _Branches()
    limits = _rate_a(network)
    lines = network.get_lines(all_attributes=True)
    v1 = vnom_of_vl.reindex(lines["voltage_level1_id"]).to_numpy(float)
    v2 = vnom_of_vl.reindex(lines["voltage_level2_id"]).to_numpy(float)
    # a line between different nominal kV: the physical pi in pu of each end's own base (no ideal ratio),
    # I1 = (Y1 + ys) V1^2/SB u1 - ys V1 V2/SB u2, as OpenLoadFlow's default "IMPEDANCE" per-uniting
    z = _col(lines, "r") + 1j * _col(lines, "x")
    ys = np.zeros(len(z), complex)
    ys[z != 0] = 1.0 / z[z != 0]
    zb = v1 * v2 / SB
    y1 = ((_col(lines, "g1") + 1j * _col(lines, "b1")) * v1 ** 2 + ys * v1 * (v1 - v2)) / SB
    y2 = ((_col(lines, "g2") + 1j * _col(lines, "b2")) * v2 ** 2 + ys * v2 * (v2 - v1)) / SB
    rows.add(list(lines.index), "line", _bus_any(lines, "1", pos_of, pos_of_bb),
             _bus_any(lines, "2", pos_of, pos_of_bb), lines["bus1_id"].to_numpy() != "",
             lines["bus2_id"].to_numpy() != "", z.real / zb, z.imag / zb, y1, y2,
             1.0, 0.0, np.array([limits.get(i, 0.0) for i in lines.index]) * v1)
    tw = network.get_2_windings_transformers(all_attributes=True)
    v1 = vnom_of_vl.reindex(tw["voltage_level1_id"]).to_numpy(float)
    v2 = vnom_of_vl.reindex(tw["voltage_level2_id"]).to_numpy(float)
    zb = v2 ** 2 / SB
    rows.add(list(tw.index), "2wt", _bus_any(tw, "1", pos_of, pos_of_bb), _bus_any(tw, "2", pos_of, pos_of_bb),
             tw["bus1_id"].to_numpy() != "", tw["bus2_id"].to_numpy() != "", _col(tw, "r_at_current_tap") / zb,
             _col(tw, "x_at_current_tap") / zb, (_col(tw, "g_at_current_tap") + 1j * _col(tw, "b_at_current_tap")) * zb,
             0j, v2 / (_col(tw, "rho") * v1), -np.deg2rad(_col(tw, "alpha")),
             np.array([limits.get(i, 0.0) for i in tw.index]) * v1)
    t3 = network.get_3_windings_transformers(all_attributes=True)
    next_number = max([n for n in numbers if n], default=0) + 1
    star_rows = [(next_number + k, tid, float(t3["rated_u0"].iat[k]), float(t3["v"].iat[k]) if "v" in t3 else np.nan,
                  float(t3["angle"].iat[k]) if "angle" in t3 else np.nan) for k, tid in enumerate(t3.index)]
    if len(t3):
        v0 = _col(t3, "rated_u0")
        zb = v0 ** 2 / SB
        star = nb0 + np.arange(len(t3))
        for leg in ("1", "2", "3"):
            vleg = vnom_of_vl.reindex(t3[f"voltage_level{leg}_id"]).to_numpy(float)
            rows.add([f"{i}/leg{leg}" for i in t3.index], "3wt", _bus_any(t3, leg, pos_of, pos_of_bb), star,
                     t3[f"bus{leg}_id"].to_numpy() != "", np.ones(len(t3), bool),
                     _col(t3, f"r{leg}_at_current_tap") / zb, _col(t3, f"x{leg}_at_current_tap") / zb,
                     (_col(t3, f"g{leg}_at_current_tap") + 1j * _col(t3, f"b{leg}_at_current_tap")) * zb, 0j,
                     v0 / (_col(t3, f"rho{leg}") * vleg), -np.deg2rad(_col(t3, f"alpha{leg}")),
                     np.array([limits.get((i, leg), 0.0) for i in t3.index]) * vleg)
    nstar = len(star_rows)
    nb = nb0 + nstar
    # star buses: alive when at least one leg is connected
    star_alive = np.zeros(nstar, bool)
    rt, ron1 = np.concatenate(rows.t or [np.zeros(0, np.int64)]), np.concatenate(rows.on1 or [np.zeros(0, bool)])
    star_alive[rt[(rt >= nb0) & ron1] - nb0] = True
    pd_, qd, gs, bs = (np.r_[a, np.zeros(nstar)] for a in (pd_, qd, gs, bs))
    # branches connected at one end only: the shunt they are at that end (OpenLoadFlow's open-branch equations)
    br = rows.finish(nb0, star_alive, gs, bs)

    # --- generators ---
    gens = network.get_generators(all_attributes=True)
    gp = pos(gens["bus_id"])
    g_on = gp >= 0
    reg = gens["voltage_regulator_on"].to_numpy(bool) & g_on
    rb = pos(gens["regulated_bus_id"])
    remote = reg & (rb != gp)
    if remote.any():
        k = int(np.flatnonzero(remote)[0])
        rbid = gens["regulated_bus_id"].iat[k]
        label = numbers[rb[k]] if rb[k] >= 0 else (rbid or "a disconnected bus")
        raise CaseError(f"generator {gens.index[k].strip()} regulates the voltage of remote bus {label} "
                        f"(remote voltage control is not modelled; set it to regulate its own bus)", source=src)
    vg = np.ones(len(gens))
    target_v = gens["target_v"].to_numpy(float)
    vg[reg] = target_v[reg] / vnom[gp[reg]]
    setpoint: dict[int, tuple[float, str]] = {}
    for k in np.flatnonzero(reg):
        b = int(gp[k])
        if b in setpoint and abs(setpoint[b][0] - vg[k]) > 1e-12:
            raise CaseError(f"generators {setpoint[b][1].strip()} and {gens.index[k].strip()} regulate bus "
                            f"{numbers[b]} to different "
                            f"voltages ({setpoint[b][0]:.6g} and {vg[k]:.6g} pu)", source=src)
        setpoint.setdefault(b, (float(vg[k]), gens.index[k]))
    for k in np.flatnonzero(g_on & ~reg):  # a fixed-Q generator at a PV bus must not move its setpoint
        if int(gp[k]) in setpoint:
            vg[k] = setpoint[int(gp[k])][0]
    qmax = _limit(gens["max_q_at_target_p"].to_numpy(float), np.inf)
    qmin = _limit(gens["min_q_at_target_p"].to_numpy(float), -np.inf)
    pmax = _limit(gens["max_p"].to_numpy(float), np.inf)
    pmin = _limit(gens["min_p"].to_numpy(float), -np.inf)
    qg = np.nan_to_num(gens["target_q"].to_numpy(float))
    gbus = np.where(g_on, gp, 0)
    if len(gens) and nb == 0:
        raise CaseError("the network has no buses", source=src)

    # --- bus types and slack ---
    btype = np.full(nb, PQ, dtype=np.int8)
    btype[:nb0][~alive] = NONE
    btype[nb0:][~star_alive] = NONE
    btype[list(setpoint)] = PV
    slack_ids, slack_rule = _slack(network, gens, reg, gp, pos_of, setpoint, numbers, src)
    for b in slack_ids:
        btype[pos_of[b]] = REF

    # --- areas, zones, owners, names ---
    all_numbers = np.array(numbers + [s[0] for s in star_rows], dtype=np.int64)
    area, zone, meta_names = _areas(network, tables, all_numbers, vl_of, nb0, rows, br)
    base_kv = np.r_[vnom, [s[2] for s in star_rows]]
    star_vm = np.array([s[3] / s[2] if np.isfinite(s[3]) and s[3] > 0 else 1.0 for s in star_rows])
    star_va = np.array([np.deg2rad(s[4]) if np.isfinite(s[4]) else 0.0 for s in star_rows])
    names_all = np.array(names + [f"{s[1]} star" for s in star_rows], dtype=object)
    case = Case(
        name=name,
        base_mva=SB,
        bus=make_buses(number=all_numbers, type=btype, pd=pd_, qd=qd, gs=br["gs"], bs=br["bs"], area=area, zone=zone,
                       vm=np.r_[vm, star_vm], va=np.r_[va, star_va], base_kv=base_kv,
                       vmax=np.r_[vmax, np.full(nstar, np.inf)], vmin=np.r_[vmin, np.zeros(nstar)], name=names_all),
        gen=make_gens(bus=gbus, pg=gens["target_p"].to_numpy(float) / SB, qg=qg / SB, qmax=qmax / SB, qmin=qmin / SB,
                      vg=vg, status=g_on, pmax=pmax / SB, pmin=pmin / SB),
        branch=make_branches(f=br["f"], t=br["t"], r=br["r"], x=br["x"], b=br["b"], rate_a=br["rate_a"] / SB,
                             rate_b=np.zeros(len(br["f"])), rate_c=np.zeros(len(br["f"])), tap=br["tap"],
                             shift=br["shift"], status=br["status"], g=br["g"], g_asym=br["g_asym"],
                             b_asym=br["b_asym"]),
        meta={"format": "powsybl", "source": src, "bus_ids": ids + [s[1] for s in star_rows],
              "branch_ids": rows.ids, "branch_kind": rows.kinds, "gen_ids": list(gens.index),
              "slack_bus_ids": slack_ids, "slack_rule": slack_rule, "merged_buses": merged,
              "star_buses": {s[1]: s[0] for s in star_rows}, **meta_names,
              **_circuits(rows, all_numbers, psse_numbers)},
    )
    check_case(case, src)
    return case


def _limit(a: np.ndarray, default: float) -> np.ndarray:
    a = np.where(np.isnan(a), default, a)
    return np.where(np.abs(a) > _BIG, np.copysign(np.inf, a), a)


def _col(df, name: str) -> np.ndarray:
    return df[name].to_numpy(float)


def _cat(parts, dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def _bus_any(df, side: str, pos_of: dict, pos_of_bb: dict) -> np.ndarray:
    """Bus position of each element's side, connected or not (through its bus-breaker bus); -1 if none."""
    col, bbcol = f"bus{side}_id", f"bus_breaker_bus{side}_id"
    bus = df[col].tolist()
    bbus = df[bbcol].tolist() if bbcol in df else [""] * len(df)
    return np.array([pos_of[b] if isinstance(b, str) and b else pos_of_bb.get(q, -1) if isinstance(q, str) else -1
                     for b, q in zip(bus, bbus, strict=True)], dtype=np.int64)


class _Branches:
    """Collects pi-model rows (OpenLoadFlow's: ratio at side 1, shunt y1 inside it, y2 at side 2)."""

    def __init__(self):
        self.ids, self.kinds = [], []
        self.f, self.t, self.on1, self.on2 = [], [], [], []
        self.r, self.x, self.y1, self.y2, self.tap, self.shift, self.rate = [], [], [], [], [], [], []

    def add(self, ids, kind, f, t, on1, on2, r, x, y1, y2, tap, shift, rate_mva):
        n = len(ids)
        self.ids.extend(ids)
        self.kinds.extend([kind] * n)
        for lst, v, dt in ((self.f, f, np.int64), (self.t, t, np.int64), (self.on1, on1, bool), (self.on2, on2, bool),
                           (self.r, r, float), (self.x, x, float), (self.y1, y1, complex), (self.y2, y2, complex),
                           (self.tap, tap, float), (self.shift, shift, float), (self.rate, rate_mva, float)):
            lst.append(np.broadcast_to(np.asarray(v, dtype=dt), (n,)))

    def finish(self, nb0, star_alive, gs, bs) -> dict:
        f, t, on1, on2 = _cat(self.f, np.int64), _cat(self.t, np.int64), _cat(self.on1, bool), _cat(self.on2, bool)
        # a 3-winding leg's star end is connected when the star bus is alive
        is_star = t >= nb0
        if is_star.any():
            on2 = np.where(is_star, star_alive[np.where(is_star, t - nb0, 0)], on2)
        r, x, tap, shift = _cat(self.r, float), _cat(self.x, float), _cat(self.tap, float), _cat(self.shift, float)
        y1, y2 = _cat(self.y1, complex), _cat(self.y2, complex)
        ys = np.zeros(len(r), complex)
        nz = (r != 0) | (x != 0)
        ys[nz] = 1.0 / (r[nz] + 1j * x[nz])
        gs, bs = gs.copy(), bs.copy()
        # open at side 2, closed at side 1: y seen from bus 1 is (y1 + ys*y2/(ys+y2)) / tap^2
        only1 = on1 & ~on2 & (f >= 0)
        only2 = on2 & ~on1 & (t >= 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            y_1 = np.where(ys + y2 != 0, y1 + ys * y2 / (ys + y2), y1) / tap ** 2
            y_2 = np.where(ys + y1 != 0, y2 + ys * y1 / (ys + y1), y2)
        np.add.at(gs, f[only1], y_1[only1].real)
        np.add.at(bs, f[only1], y_1[only1].imag)
        np.add.at(gs, t[only2], y_2[only2].real)
        np.add.at(bs, t[only2], y_2[only2].imag)
        status = on1 & on2
        # disconnected ends still need a bus index; keep the element's own bus when it has one
        f = np.where(f >= 0, f, np.where(t >= 0, t, 0))
        t = np.where(t >= 0, t, f)
        return {"f": f, "t": t, "r": r, "x": x, "b": 2 * y1.imag, "g": 2 * y1.real, "g_asym": 2 * (y2 - y1).real,
                "b_asym": 2 * (y2 - y1).imag, "tap": tap, "shift": shift, "status": status,
                "rate_a": _cat(self.rate, float), "gs": gs, "bs": bs}


def _rate_a(network) -> dict:
    """Permanent current limits (A), keyed by branch id (side 1, else side 2) or (3wt id, leg), times sqrt(3)/1000.

    Multiplied by a side's nominal kV this gives MVA (the PSS/E importer writes RATEA as such a limit).
    """
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            get = getattr(network, "get_loading_limits", None) or network.get_operational_limits
            lim = get().reset_index()
    except Exception:
        return {}
    if lim.empty:
        return {}
    lim = lim[(lim["type"] == "CURRENT") & (lim["acceptable_duration"] == -1)]
    out: dict = {}
    k3 = np.sqrt(3.0) / 1000.0
    for eid, side, value in zip(lim["element_id"], lim["side"], lim["value"], strict=True):
        if side in ("ONE", "TWO") and eid not in out and side == "ONE":
            out[eid] = float(value) * k3
        elif side in ("ONE", "TWO", "THREE"):
            leg = {"ONE": "1", "TWO": "2", "THREE": "3"}[side]
            out.setdefault((eid, leg), float(value) * k3)
    return out


def _slack(network, gens, reg, gp, pos_of, setpoint, numbers, src):
    """Slack bus ids: the file's slack terminals, else the bus of the largest regulating generator."""
    try:
        st = network.get_extensions("slackTerminal")
    except Exception:
        st = None
    ids = []
    if st is not None and len(st):
        for bus_id in st["bus_id"]:
            if isinstance(bus_id, str) and bus_id and bus_id in pos_of and bus_id not in ids:
                ids.append(bus_id)
    rule = "file"
    if not ids:
        if not reg.any():
            raise CaseError("no slack bus: no slack terminal in the file and no voltage-regulating generator",
                            source=src)
        tp = np.where(reg, np.nan_to_num(gens["target_p"].to_numpy(float), nan=-np.inf), -np.inf)
        k = int(np.argmax(tp))
        ids = [gens["bus_id"].iat[k]]
        rule = f"voltage-regulating generator with the largest target P ({gens.index[k]})"
    for b in ids:
        if pos_of[b] not in setpoint:
            raise CaseError(f"slack bus {numbers[pos_of[b]]} has no in-service voltage-regulating generator "
                            "(gridflow's slack holds |V| at a generator setpoint)", source=src)
    return ids, rule


def _areas(network, tables, numbers, vl_of, nb0, rows, br):
    nb = len(numbers)
    area = np.ones(nb, np.int64)
    zone = np.ones(nb, np.int64)
    meta: dict = {}
    if tables is not None:
        area[:] = [tables.bus_area.get(int(n), 1) for n in numbers]
        zone[:] = [tables.bus_zone.get(int(n), 1) for n in numbers]
        owner = [tables.bus_owner.get(int(n), 1) for n in numbers]
        meta["bus_owner"] = np.array(owner, dtype=np.int64)
        meta["area_names"] = {int(a): tables.area_names.get(int(a), f"area {a}") for a in np.unique(area)}
        meta["zone_names"] = {int(z): tables.zone_names.get(int(z), f"zone {z}") for z in np.unique(zone)}
        meta["owner_names"] = dict(tables.owner_names)
    else:
        try:
            avl = network.get_areas_voltage_levels().reset_index()
            areas = network.get_areas(all_attributes=True)
        except Exception:
            avl, areas = None, None
        names = {}
        if avl is not None and len(avl):
            order = {a: i + 1 for i, a in enumerate(areas.index)}
            vl_area = {}
            for a, v in zip(avl["id"], avl["voltage_level_id"], strict=True):
                vl_area.setdefault(v, order[a])
            area[:nb0] = [vl_area.get(v, 0) for v in vl_of]
            names = {order[a]: (areas.at[a, "name"] or a) for a in areas.index}
        zone[:] = area
        meta["area_names"] = {int(a): names.get(int(a), f"area {a}") for a in np.unique(area)}
        meta["zone_names"] = dict(meta["area_names"])
    # star buses take the area and zone of their first connected winding
    for s in range(nb0, nb):
        legs = np.flatnonzero(br["t"] == s)
        if len(legs):
            area[s], zone[s] = area[br["f"][legs[0]]], zone[br["f"][legs[0]]]
    return area, zone, meta


_LINE_ID = re.compile(r"^L-(\d+)-(\d+)-(.*)$")
_T2_ID = re.compile(r"^T-(\d+)-(\d+)-(.*)$")
_T3_ID = re.compile(r"^T-(\d+)-(\d+)-(\d+)-(.*)/leg\d$")


def _circuits(rows, numbers, psse_numbers) -> dict:
    """PSS/E (from, to, third bus, circuit id) per branch row, from the PSS/E importer's ids."""
    if not psse_numbers:
        return {}
    ckt, buses = [], []
    for eid, kind in zip(rows.ids, rows.kinds, strict=True):
        m = (_T3_ID if kind == "3wt" else _T2_ID if kind == "2wt" else _LINE_ID).match(eid)
        if m is None:
            ckt.append(None)
            buses.append(None)
        elif kind == "3wt":
            ckt.append(m.group(4).strip())
            buses.append((int(m.group(1)), int(m.group(2)), int(m.group(3))))
        else:
            ckt.append(m.group(3).strip())
            buses.append((int(m.group(1)), int(m.group(2)), 0))
    return {"branch_ckt": ckt, "branch_buses": buses}


def _refuse_unmodelled(network, src: str) -> None:
    """One line for the first element of a kind gridflow does not model (connected ones only)."""
    checks = (
        ("get_hvdc_lines", "HVDC line", None),
        ("get_vsc_converter_stations", "VSC converter station (HVDC)", "connected"),
        ("get_lcc_converter_stations", "LCC converter station (HVDC)", "connected"),
        ("get_static_var_compensators", "static var compensator (FACTS)", "connected"),
        ("get_batteries", "battery", "connected"),
        ("get_boundary_lines" if hasattr(network, "get_boundary_lines") else "get_dangling_lines",
         "dangling (boundary) line", "connected"),
        ("get_tie_lines", "tie line", None),
    )
    for getter, what, col in checks:
        try:
            df = getattr(network, getter)()
        except Exception:
            continue
        if col is not None and col in df:
            df = df[df[col].astype(bool)]
        if len(df):
            more = f" (and {len(df) - 1} more)" if len(df) > 1 else ""
            raise CaseError(f"{what} {str(df.index[0]).strip()}{more} is not modelled by gridflow", source=src)
