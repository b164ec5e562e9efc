"""Write a :class:`~gridflow.case.Case` as a PSS/E version-33 RAW file.

pypowsybl writes PSS/E only from its own network model, so gridflow writes
the few record types its model needs itself, in the layout of the PSS/E 33
Program Operation Manual ("Power Flow Raw Data File Contents"):

* buses ``I, 'NAME', BASKV, IDE, AREA, ZONE, OWNER, VM, VA, NVHI, NVLO,
  EVHI, EVLO`` (a case without base kV, MATPOWER's 0, is written with
  BASKV = 1 kV: the per-unit power flow does not use it);
* one load per bus with constant-power ``PL, QL``, one fixed shunt per bus
  with ``GL, BL`` (MW / MVAr at 1 pu);
* generators ``PG, QG, QT, QB, VS`` regulating their own bus (IREG = 0),
  MBASE = SBASE; infinite Q or P limits are written as +-9999 (PSS/E's
  "none"). A generator at a PV or slack bus whose Q limits are equal
  (MATPOWER's ``QMAX = QMIN``; gridflow regulates its bus while Q limits are
  off) is written with ``QT = QB + 1e-6`` MVAr: PSS/E and pypowsybl treat
  ``QT = QB`` as a fixed-Q machine that does not regulate;
* branches with ratio 1 and no shift as lines ``R, X, B`` plus line shunts
  ``GI, BI, GJ, BJ`` (carrying gridflow's charging conductance and to-side
  asymmetric charging exactly); the others as two-winding transformers with
  CW = CZ = CM = 1 (ratio in pu of the bus base kV, impedance in pu on SBASE),
  ``WINDV1`` = tap, ``ANG1`` = shift (degrees, PSS/E's sign is MATPOWER's),
  ``WINDV2`` = 1; ratings RATEA-C in MVA (0 = none, as in both formats);
* areas, zones and owners with the names in ``case.meta`` (else "AREA n").

Circuit ids come from ``case.meta["branch_ckt"]`` where a PSS/E reader kept
them, else are numbered per bus pair ("1", "2", ...). Refused in one line:
a transformer with line charging or charging conductance (the PSS/E
transformer has only a magnetizing branch at its winding-1 end, MATPOWER's
charging sits on both sides of the ideal ratio) and asymmetric series
impedance (pandapower impedance elements).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from gridflow.case import PV, REF, Case
from gridflow.errors import CaseError

_NOLIM = 9999.0
_QT_GAP = 1e-6  # MVAr


def write_psse(case: Case, path: str | Path) -> Path:
    """Write ``case`` to ``path`` as PSS/E RAW version 33; returns the path.

    Raises
    ------
    CaseError
        Data a PSS/E RAW file cannot hold (see module doc), or the file cannot be written.
    """
    path = Path(path)
    src = str(path)
    b, g, br = case.bus, case.gen, case.branch
    base = float(case.base_mva)
    num = b.number
    xf = (br.tap != 1.0) | (br.shift != 0.0)
    bad = np.flatnonzero((num < 1) | (num > 999997))
    if len(bad):
        raise CaseError(f"bus number {int(num[bad[0]])} is outside PSS/E's 1..999997"
                        f"{f' (and {len(bad) - 1} more)' if len(bad) > 1 else ''}; renumber the buses first",
                        source=src)
    for name in ("r_asym", "x_asym"):
        bad = np.flatnonzero(getattr(br, name) != 0)
        if len(bad):
            raise CaseError(f"branch {int(bad[0])} ({_ends(case, bad[0])}) has an asymmetric series impedance, which "
                            "PSS/E RAW cannot hold", source=src)
    bad = np.flatnonzero(xf & ((br.b != 0) | (br.g != 0) | (br.g_asym != 0) | (br.b_asym != 0)))
    if len(bad):
        raise CaseError(f"branch {int(bad[0])} ({_ends(case, bad[0])}) is a transformer (tap {br.tap[bad[0]]:g}, shift "
                        f"{np.rad2deg(br.shift[bad[0]]):g} deg) with line charging, which a PSS/E transformer cannot "
                        f"hold{f' (and {len(bad) - 1} more)' if len(bad) > 1 else ''}", source=src)
    owner = case.meta.get("bus_owner")
    owner = np.ones(case.nb, np.int64) if owner is None or len(owner) != case.nb else np.asarray(owner)
    kv = np.where(b.base_kv > 0, b.base_kv, 1.0)
    out = [f"0, {_f(base)}, 33, 0, 1, 60.00     / PSS/E-33 RAW written by gridflow",
           _title(case.name), ""]
    for i in range(case.nb):
        out.append(f"{int(num[i])},{_q(b.name[i])},{_f(kv[i])},{int(b.type[i])},{int(b.area[i])},{int(b.zone[i])},"
                   f"{int(owner[i])},{_f(b.vm[i])},{_f(np.rad2deg(b.va[i]))},{_lim(b.vmax[i], 1.1)},"
                   f"{_lim(b.vmin[i], 0.9)},{_lim(b.vmax[i], 1.1)},{_lim(b.vmin[i], 0.9)}")
    out.append("0 / END OF BUS DATA, BEGIN LOAD DATA")
    for i in np.flatnonzero((b.pd != 0) | (b.qd != 0)):
        out.append(f"{int(num[i])},'1',1,{int(b.area[i])},{int(b.zone[i])},{_f(b.pd[i] * base)},{_f(b.qd[i] * base)},"
                   f"0,0,0,0,{int(owner[i])},1,0")
    out.append("0 / END OF LOAD DATA, BEGIN FIXED SHUNT DATA")
    for i in np.flatnonzero((b.gs != 0) | (b.bs != 0)):
        out.append(f"{int(num[i])},'1',1,{_f(b.gs[i] * base)},{_f(b.bs[i] * base)}")
    out.append("0 / END OF FIXED SHUNT DATA, BEGIN GENERATOR DATA")
    mid = machine_ids(case)
    for k in range(case.ng):
        n = int(num[g.bus[k]])
        qt = g.qmax[k] * base
        if g.qmax[k] == g.qmin[k] and b.type[g.bus[k]] in (PV, REF):
            qt = qt + _QT_GAP  # PSS/E and pypowsybl hold a generator with QT = QB at fixed Q (see module doc)
        out.append(f"{n},{_q(mid[k])},{_f(g.pg[k] * base)},{_f(g.qg[k] * base)},{_lim(qt, _NOLIM)},"
                   f"{_lim(g.qmin[k] * base, -_NOLIM)},{_f(g.vg[k])},0,{_f(base)},0,1,0,0,1,{int(bool(g.status[k]))},"
                   f"100,{_lim(g.pmax[k] * base, _NOLIM)},{_lim(g.pmin[k] * base, -_NOLIM)},{int(owner[g.bus[k]])},1,"
                   "0,1,0,1,0,1,0,1")
    out.append("0 / END OF GENERATOR DATA, BEGIN BRANCH DATA")
    ckt = circuit_ids(case)
    for k in np.flatnonzero(~xf):
        f, t = br.f[k], br.t[k]
        gi, gj = br.g[k] / 2, (br.g[k] + br.g_asym[k]) / 2
        bj = br.b_asym[k] / 2
        out.append(f"{int(num[f])},{int(num[t])},{_q(ckt[k])},{_f(br.r[k])},{_f(br.x[k])},{_f(br.b[k])},"
                   f"{_f(br.rate_a[k] * base)},{_f(br.rate_b[k] * base)},{_f(br.rate_c[k] * base)},"
                   f"{_f(gi)},0,{_f(gj)},{_f(bj)},{int(bool(br.status[k]))},1,0,{int(owner[f])},1,0,1,0,1,0,1")
    out.append("0 / END OF BRANCH DATA, BEGIN TRANSFORMER DATA")
    for k in np.flatnonzero(xf):
        f, t = br.f[k], br.t[k]
        out += [f"{int(num[f])},{int(num[t])},0,{_q(ckt[k])},1,1,1,0,0,2,'',{int(bool(br.status[k]))},"
                f"{int(owner[f])},1,"
                "0,1,0,1,0,1,''",
                f"{_f(br.r[k])},{_f(br.x[k])},{_f(base)}",
                f"{_f(br.tap[k])},0,{_f(np.rad2deg(br.shift[k]))},{_f(br.rate_a[k] * base)},{_f(br.rate_b[k] * base)},"
                f"{_f(br.rate_c[k] * base)},0,0,1.1,0.9,1.1,0.9,33,0,0,0,0",
                "1,0"]
    out.append("0 / END OF TRANSFORMER DATA, BEGIN AREA DATA")
    area_names = case.meta.get("area_names") or {}
    for a in np.unique(b.area):
        out.append(f"{int(a)},0,0,10,{_q(area_names.get(int(a), f'AREA {int(a)}'))}")
    out += ["0 / END OF AREA DATA, BEGIN TWO-TERMINAL DC DATA",
            "0 / END OF TWO-TERMINAL DC DATA, BEGIN VSC DC LINE DATA",
            "0 / END OF VSC DC LINE DATA, BEGIN IMPEDANCE CORRECTION DATA",
            "0 / END OF IMPEDANCE CORRECTION DATA, BEGIN MULTI-TERMINAL DC DATA",
            "0 / END OF MULTI-TERMINAL DC DATA, BEGIN MULTI-SECTION LINE DATA",
            "0 / END OF MULTI-SECTION LINE DATA, BEGIN ZONE DATA"]
    zone_names = case.meta.get("zone_names") or {}
    for z in np.unique(b.zone):
        out.append(f"{int(z)},{_q(zone_names.get(int(z), f'ZONE {int(z)}'))}")
    out += ["0 / END OF ZONE DATA, BEGIN INTER-AREA TRANSFER DATA",
            "0 / END OF INTER-AREA TRANSFER DATA, BEGIN OWNER DATA"]
    owner_names = case.meta.get("owner_names") or {}
    for o in np.unique(owner):
        out.append(f"{int(o)},{_q(owner_names.get(int(o), f'OWNER {int(o)}'))}")
    out += ["0 / END OF OWNER DATA, BEGIN FACTS DEVICE DATA",
            "0 / END OF FACTS DEVICE DATA, BEGIN SWITCHED SHUNT DATA",
            "0 / END OF SWITCHED SHUNT DATA, BEGIN GNE DEVICE DATA",
            "0 / END OF GNE DEVICE DATA, BEGIN INDUCTION MACHINE DATA",
            "0 / END OF INDUCTION MACHINE DATA",
            "Q"]
    try:
        path.write_text("\n".join(out) + "\n")
    except OSError as e:
        raise CaseError(f"cannot write file: {e.strerror or e}", source=src) from None
    return path


def _ends(case: Case, k) -> str:
    return f"{int(case.bus.number[case.branch.f[k]])}-{int(case.bus.number[case.branch.t[k]])}"


def circuit_ids(case: Case) -> list[str]:
    """PSS/E circuit id per branch row: the PSS/E reader's where kept, else "1", "2", ... per bus pair in row order."""
    kept = case.meta.get("branch_ckt")
    if kept is not None and len(kept) == case.nl and all(c is not None for c in kept):
        return [str(c).strip() for c in kept]
    seen: dict[tuple, int] = {}
    out = []
    for f, t in zip(case.bus.number[case.branch.f].tolist(), case.bus.number[case.branch.t].tolist(), strict=True):
        key = (min(f, t), max(f, t))
        seen[key] = seen.get(key, 0) + 1
        out.append(str(seen[key]))
    return out


def machine_ids(case: Case) -> list[str]:
    """PSS/E machine id per generator row: the PSS/E reader's (``B<bus>-G<id>``), else "1", "2", ... per bus."""
    kept = case.meta.get("gen_ids")
    if kept is not None and len(kept) == case.ng:
        ids = [re.match(r"^B\d+-G(.*)$", str(g)) for g in kept]
        if all(ids):
            return [m.group(1).strip() for m in ids]
    seen: dict[int, int] = {}
    out = []
    for b in case.gen.bus.tolist():
        seen[b] = seen.get(b, 0) + 1
        out.append(str(seen[b]))
    return out


def _f(v) -> str:
    """A float in its shortest exact decimal form."""
    v = float(v)
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def _lim(v, default) -> str:
    return _f(default) if not np.isfinite(v) else _f(v)


def _q(s) -> str:
    s = "" if s is None else str(s)
    return "'" + s.replace("'", " ") + "'"


def _title(name: str) -> str:
    return str(name).replace("\n", " ")[:60]
