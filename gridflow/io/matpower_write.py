"""Write a :class:`~gridflow.case.Case` as a MATPOWER version-2 ``.m`` file.

Plain numeric tables only (``mpc.bus``, ``mpc.gen``, ``mpc.branch``, and
``mpc.bus_name`` when the case has names): no statements after the tables, so
any MATPOWER reader (and MATPOWER itself) reads the file as written.

Exact: :func:`gridflow.io.matpower.read_matpower` of the written file gives
the same arrays bit for bit for every case read from a ``.m`` file (the round
trip is tested on every case of the ``matpower`` package); for values that
never were in MW or degrees (a case from another reader), the written value
is the nearest one, within an ulp or two. Per-unit values are written in MW/MVAr/degrees
as the float ``y`` whose conversion back (``y * (1 / baseMVA)``, ``deg2rad(y)``)
is the stored value (``repr`` of a float is its shortest exact decimal form),
and ``+-Inf`` as MATPOWER writes it.

Refused (one line): what the MATPOWER format cannot hold: charging
conductance ``g`` and the to-side asymmetric parts (pandapower impedances).
Generator ``MBASE`` is written as ``baseMVA``; branch ``ANGMIN``/``ANGMAX``
as -360/360 (gridflow's power flow uses neither).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gridflow.case import Case
from gridflow.errors import CaseError


def write_matpower(case: Case, path: str | Path) -> Path:
    """Write ``case`` to ``path`` (a ``.m`` file); returns the path.

    Raises
    ------
    CaseError
        The case has data MATPOWER cannot represent (see module doc), or the
        file cannot be written.
    """
    path = Path(path)
    _refuse_unwritable(case, str(path))
    base = float(case.base_mva)
    b, g, br = case.bus, case.gen, case.branch
    num = b.number
    bus = [num, b.type, _unscale(b.pd, base), _unscale(b.qd, base), _unscale(b.gs, base), _unscale(b.bs, base),
           b.area, b.vm, _deg(b.va), b.base_kv, b.zone, b.vmax, b.vmin]
    gen = [num[g.bus], _unscale(g.pg, base), _unscale(g.qg, base), _unscale(g.qmax, base), _unscale(g.qmin, base),
           g.vg, np.full(case.ng, base), g.status.astype(np.int64), _unscale(g.pmax, base), _unscale(g.pmin, base)]
    tap = np.where((br.tap == 1.0) & (br.shift == 0.0), 0.0, br.tap)
    branch = [num[br.f], num[br.t], br.r, br.x, br.b, _unscale(br.rate_a, base), _unscale(br.rate_b, base),
              _unscale(br.rate_c, base), tap, _deg(br.shift), br.status.astype(np.int64),
              np.full(case.nl, -360.0), np.full(case.nl, 360.0)]
    fname = _function_name(path.stem)
    out = [f"function mpc = {fname}",
           f"%{fname.upper()}  written by gridflow from case '{case.name}'",
           "",
           "%% MATPOWER Case Format : Version 2",
           "mpc.version = '2';",
           "",
           "%%-----  Power Flow Data  -----%%",
           "%% system MVA base",
           f"mpc.baseMVA = {_num(base)};",
           "",
           "%% bus data",
           "%\tbus_i\ttype\tPd\tQd\tGs\tBs\tarea\tVm\tVa\tbaseKV\tzone\tVmax\tVmin",
           "mpc.bus = [", *_rows(bus), "];",
           "",
           "%% generator data",
           "%\tbus\tPg\tQg\tQmax\tQmin\tVg\tmBase\tstatus\tPmax\tPmin",
           "mpc.gen = [", *_rows(gen), "];",
           "",
           "%% branch data",
           "%\tfbus\ttbus\tr\tx\tb\trateA\trateB\trateC\tratio\tangle\tstatus\tangmin\tangmax",
           "mpc.branch = [", *_rows(branch), "];"]
    names = b.name
    if any(isinstance(n, str) and n for n in names):
        out += ["", "%% bus names", "mpc.bus_name = {"]
        out += ["\t'" + str(n).replace("'", "''") + "';" for n in names]
        out += ["};"]
    try:
        path.write_text("\n".join(out) + "\n")
    except OSError as e:
        raise CaseError(f"cannot write file: {e.strerror or e}", source=str(path)) from None
    return path


def _refuse_unwritable(case: Case, src: str) -> None:
    br = case.branch
    for name, what in (("g", "charging conductance g"), ("r_asym", "asymmetric series r"),
                       ("x_asym", "asymmetric series x"), ("g_asym", "asymmetric charging g"),
                       ("b_asym", "asymmetric charging b")):
        a = getattr(br, name)
        bad = np.flatnonzero(a != 0)
        if len(bad):
            k = int(bad[0])
            f, t = int(case.bus.number[br.f[k]]), int(case.bus.number[br.t[k]])
            raise CaseError(f"branch {k} ({f}-{t}) has {what} = {a[k]:g} pu, which a MATPOWER case cannot hold"
                            f"{f' (and {len(bad) - 1} more branches)' if len(bad) > 1 else ''}", source=src)
    bad = [n for n in case.bus.name if isinstance(n, str) and ("\n" in n or "\r" in n)]
    if bad:
        raise CaseError(f"bus name {bad[0]!r} has a line break, which a MATPOWER case cannot hold", source=src)


def _exact_inverse(x: np.ndarray, forward, guess: np.ndarray) -> np.ndarray:
    """For each x, a float y near ``guess`` with ``forward(y) == x`` exactly (searched ulp by ulp)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(guess, dtype=np.float64).copy()
    ok = (forward(y) == x) | ~np.isfinite(x)
    cand_lo, cand_hi = y.copy(), y.copy()
    for _ in range(8):
        if ok.all():
            break
        cand_lo = np.nextafter(cand_lo, -np.inf)
        cand_hi = np.nextafter(cand_hi, np.inf)
        for c in (cand_lo, cand_hi):
            hit = ~ok & (forward(c) == x)
            y[hit] = c[hit]
            ok |= hit
    # where no float maps exactly (a value that never came from these units, e.g. 1.4 pu = y * 0.01 has no
    # solution), ``guess`` stays: the reader then gets the value within an ulp or two
    return y


def _unscale(x: np.ndarray, base: float) -> np.ndarray:
    """MW/MVAr values that the reader's ``y * (1 / base)`` turns back into the pu values exactly."""
    x = np.asarray(x, dtype=np.float64)
    s = 1.0 / base
    return _exact_inverse(x, lambda y: y * s, x * base)


def _deg(x: np.ndarray) -> np.ndarray:
    """Degrees whose ``np.deg2rad`` gives back the radians exactly."""
    x = np.asarray(x, dtype=np.float64)
    return _exact_inverse(x, np.deg2rad, np.rad2deg(x))


def _num(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if np.isinf(v):
        return "Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def _rows(cols) -> list[str]:
    n = len(cols[0]) if cols else 0
    cols = [np.asarray(c).tolist() for c in cols]
    return ["\t" + "\t".join(_num(c[i]) for c in cols) + ";" for i in range(n)]


def _function_name(stem: str) -> str:
    import re

    name = re.sub(r"\W", "_", stem) or "case"
    return name if name[0].isalpha() else f"case_{name}"
