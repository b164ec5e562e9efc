"""Read MATPOWER version-2 case files (``.m``) into a :class:`~gridflow.case.Case`.

Reads ``mpc.version``, ``mpc.baseMVA``, ``mpc.bus``, ``mpc.gen``, ``mpc.branch``
and ``mpc.bus_name``; every other field (``gencost``, ``genfuel``, ...) is
skipped. Understands ``%`` comments, ``...`` continuations, blank lines, tabs,
rows ended by ``;`` or by a newline, and several rows on one line.

Errors name the file and the line: a truncated matrix, a row with too few
columns, a number that does not parse, a branch or generator at a bus that
does not exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from gridflow.case import Case, check_case, make_branches, make_buses, make_gens
from gridflow.errors import CaseError

# MATPOWER column numbers (0-based), named once here.
BUS_I, BUS_TYPE, PD, QD, GS, BS, BUS_AREA, VM, VA, BASE_KV, ZONE, VMAX, VMIN = range(13)
GEN_BUS, PG, QG, QMAX, QMIN, VG, MBASE, GEN_STATUS, PMAX, PMIN = range(10)
F_BUS, T_BUS, BR_R, BR_X, BR_B, RATE_A, RATE_B, RATE_C, TAP, SHIFT, BR_STATUS = range(11)

_MIN_COLS = {"bus": 13, "gen": 10, "branch": 11}
_FIELD = re.compile(r"^\s*mpc\.(\w+)\s*=\s*(.*)$")


def read_matpower(path: str | Path) -> Case:
    """Read a MATPOWER version-2 ``.m`` file.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    Case
        Powers in pu on ``baseMVA``; angles in radians; bus names where the
        file has ``mpc.bus_name``.
    """
    path = Path(path)
    src = str(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise CaseError(f"cannot read file: {e.strerror}", source=src) from None
    fields = _parse_fields(text, src)
    version = fields.get("version")
    if version is not None and version[0].strip("'\" ") not in ("2",):
        raise CaseError(f"only MATPOWER case format version 2 is supported, found version {version[0]}",
                        source=src, line=version[1])
    for name in ("baseMVA", "bus", "gen", "branch"):
        if name not in fields:
            raise CaseError(f"missing mpc.{name}", source=src)
    base_line = fields["baseMVA"][1]
    try:
        base_mva = float(fields["baseMVA"][0].rstrip(";").strip())
    except ValueError:
        raise CaseError(f"mpc.baseMVA is not a number: {fields['baseMVA'][0]!r}", source=src,
                        line=base_line) from None
    bus = _matrix(fields["bus"], "bus", src)
    gen = _matrix(fields["gen"], "gen", src)
    branch = _matrix(fields["branch"], "branch", src)
    names = _cell(fields["bus_name"], src) if "bus_name" in fields else None
    return _to_case(path.stem, base_mva, bus, gen, branch, names, src, fields)


def _parse_fields(text: str, src: str) -> dict:
    """Map field name -> (body, first line) for every ``mpc.X = ...`` in the file.

    For matrices and cells the body is a list of (line number, row text).
    """
    fields: dict = {}
    lines = text.splitlines()
    i = 0
    n = len(lines)
    while i < n:
        raw = _strip_comment(lines[i])
        m = _FIELD.match(raw)
        if not m:
            i += 1
            continue
        name, rest = m.group(1), m.group(2).strip()
        start = i + 1
        if rest.startswith("[") or rest.startswith("{"):
            close = "]" if rest[0] == "[" else "}"
            rows: list[tuple[int, str]] = []
            body = rest[1:]
            lineno = start
            while True:
                end = body.find(close)
                if end >= 0:
                    rows.append((lineno, body[:end]))
                    break
                rows.append((lineno, body))
                i += 1
                if i >= n:
                    raise CaseError(f"mpc.{name} opened at line {start} is never closed with '{close}' "
                                    "(truncated file?)", source=src, line=n)
                lineno = i + 1
                body = _strip_comment(lines[i]) if close == "]" else _strip_cell_comment(lines[i])
            fields[name] = (rows, start)
        else:
            fields[name] = (rest.rstrip(";").strip(), start)
        i += 1
    return fields


def _strip_comment(line: str) -> str:
    k = line.find("%")
    return line if k < 0 else line[:k]


def _strip_cell_comment(line: str) -> str:
    # a '%' inside a quoted name is text, not a comment
    out, quoted = [], False
    for ch in line:
        if ch == "'":
            quoted = not quoted
        elif ch == "%" and not quoted:
            break
        out.append(ch)
    return "".join(out)


def _matrix(field, name: str, src: str) -> np.ndarray:
    rows_in, start = field
    if not isinstance(rows_in, list):
        raise CaseError(f"mpc.{name} is not a matrix", source=src, line=start)
    rows: list[list[str]] = []
    row_lines: list[int] = []
    pending: list[str] = []
    pending_line = None
    for lineno, body in rows_in:
        cont = "..." in body
        if cont:
            body = body[: body.find("...")]
        parts = body.replace(",", " ").split(";")
        for j, part in enumerate(parts):
            toks = part.split()
            if toks:
                if pending_line is None:
                    pending_line = lineno
                pending.extend(toks)
            row_ends = j < len(parts) - 1 or not cont
            if row_ends and pending:
                rows.append(pending)
                row_lines.append(pending_line)
                pending, pending_line = [], None
    if pending:
        rows.append(pending)
        row_lines.append(pending_line)
    need = _MIN_COLS[name]
    if not rows:
        if name == "bus":
            raise CaseError("mpc.bus is empty", source=src, line=start)
        return np.zeros((0, need))
    width = len(rows[0])
    for r, ln in zip(rows, row_lines, strict=False):
        if len(r) != width:
            raise CaseError(f"mpc.{name} row has {len(r)} columns, expected {width} like the first row",
                            source=src, line=ln)
    if width < need:
        raise CaseError(f"mpc.{name} has {width} columns, a version-2 case needs at least {need}",
                        source=src, line=row_lines[0])
    flat = [t for r in rows for t in r]
    try:
        data = np.array(flat, dtype=np.float64)
    except ValueError:
        for r, ln in zip(rows, row_lines, strict=False):
            for t in r:
                try:
                    float(t)
                except ValueError:
                    raise CaseError(f"mpc.{name}: {t!r} is not a number", source=src, line=ln) from None
        raise
    data = data.reshape(len(rows), width)
    bad = np.isnan(data[:, :need]).any(axis=1)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise CaseError(f"mpc.{name} row has NaN", source=src, line=row_lines[k])
    return _with_lines(data, row_lines)


class _Rows(np.ndarray):
    """A float matrix that remembers each row's line in the file (for errors)."""

    lines: list[int]


def _with_lines(data: np.ndarray, lines: list[int]) -> np.ndarray:
    out = data.view(_Rows)
    out.lines = lines
    return out


def _cell(field, src: str) -> np.ndarray:
    rows_in, start = field
    if not isinstance(rows_in, list):
        raise CaseError("mpc.bus_name is not a cell array", source=src, line=start)
    names = []
    for _lineno, body in rows_in:
        names.extend(m.group(1).replace("''", "'") for m in re.finditer(r"'((?:[^']|'')*)'", body))
    return np.array(names, dtype=object)


def _to_case(name, base_mva, bus, gen, branch, names, src, fields) -> Case:
    nb = bus.shape[0]
    number = bus[:, BUS_I]
    if (number != np.round(number)).any():
        k = int(np.flatnonzero(number != np.round(number))[0])
        raise CaseError(f"bus number {number[k]} is not an integer", source=src, line=bus.lines[k])
    number = number.astype(np.int64)
    uniq, first, counts = np.unique(number, return_index=True, return_counts=True)
    if (counts > 1).any():
        dup = int(uniq[counts > 1][0])
        k = int(np.flatnonzero(number == dup)[1])
        raise CaseError(f"duplicate bus number {dup}", source=src, line=bus.lines[k])
    lookup = dict(zip(number.tolist(), range(nb), strict=False))

    def index(col, mat, what):
        out = np.empty(mat.shape[0], dtype=np.int64)
        for k, v in enumerate(mat[:, col].tolist()):
            j = lookup.get(int(v)) if v == int(v) else None
            if j is None:
                raise CaseError(f"{what} {k + 1} refers to unknown bus {v:g}", source=src, line=mat.lines[k])
            out[k] = j
        return out

    gbus = index(GEN_BUS, gen, "generator")
    fbus = index(F_BUS, branch, "branch")
    tbus = index(T_BUS, branch, "branch")
    if names is None or len(names) != nb:
        if names is not None:
            raise CaseError(f"mpc.bus_name has {len(names)} names for {nb} buses", source=src,
                            line=fields["bus_name"][1])
        names = np.array([""] * nb, dtype=object)
    base_kv = bus[:, BASE_KV]
    bad = base_kv <= 0
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise CaseError(f"bus {number[k]}: base kV must be positive, got {base_kv[k]:g}", source=src,
                        line=bus.lines[k])
    bt = bus[:, BUS_TYPE]
    bad = ~np.isin(bt, (1, 2, 3, 4))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise CaseError(f"bus {number[k]}: bus type {bt[k]:g} is not 1 (PQ), 2 (PV), 3 (ref) or 4 (isolated)",
                        source=src, line=bus.lines[k])
    s = 1.0 / base_mva
    tap = branch[:, TAP].copy()
    tap[tap == 0] = 1.0
    case = Case(
        name=name,
        base_mva=base_mva,
        bus=make_buses(
            number=number, type=bt, pd=bus[:, PD] * s, qd=bus[:, QD] * s, gs=bus[:, GS] * s, bs=bus[:, BS] * s,
            area=bus[:, BUS_AREA], zone=bus[:, ZONE], vm=bus[:, VM], va=np.deg2rad(bus[:, VA]),
            base_kv=base_kv, vmax=bus[:, VMAX], vmin=bus[:, VMIN], name=names,
        ),
        gen=make_gens(
            bus=gbus, pg=gen[:, PG] * s, qg=gen[:, QG] * s, qmax=gen[:, QMAX] * s, qmin=gen[:, QMIN] * s,
            vg=gen[:, VG], status=gen[:, GEN_STATUS] > 0, pmax=gen[:, PMAX] * s, pmin=gen[:, PMIN] * s,
        ),
        branch=make_branches(
            f=fbus, t=tbus, r=branch[:, BR_R], x=branch[:, BR_X], b=branch[:, BR_B],
            rate_a=branch[:, RATE_A] * s, rate_b=branch[:, RATE_B] * s, rate_c=branch[:, RATE_C] * s,
            tap=tap, shift=np.deg2rad(branch[:, SHIFT]), status=branch[:, BR_STATUS] > 0,
        ),
        meta={"source": src, "format": "matpower"},
    )
    check_case(case, src)
    return case
