"""Read MATPOWER version-2 case files (``.m``) into a :class:`~gridflow.case.Case`.

Reads ``mpc.version``, ``mpc.baseMVA``, ``mpc.bus``, ``mpc.gen``, ``mpc.branch``
and ``mpc.bus_name``; every other field (``gencost``, ``genfuel``, ...) is
skipped. Understands ``%`` comments, ``...`` continuations, blank lines, tabs,
rows ended by ``;`` or by a newline, and several rows on one line.

Numbers may be written as simple arithmetic (``50/3``, ``135/sqrt(3)``, as in
case533mt); ``+-Inf`` is accepted only where MATPOWER means "no limit" (Q and P
limits, ratings, voltage limits), NaN nowhere.

Errors are :class:`~gridflow.errors.CaseError` with one line naming the file
and, where there is one, the line: an empty or non-MATPOWER file, a version-1
case, a missing field, a matrix never closed (or not closed before the next
field), a row with a different number of columns, a token that is not a
number, NaN/Inf where not allowed (with the column's name), a bad baseMVA,
duplicate bus numbers, a branch or generator at a bus that does not exist, a
bad bus type or base kV; then :func:`~gridflow.case.check_case` (no slack bus...).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from gridflow.case import Case, base_kv_problem, check_case, make_branches, make_buses, make_gens
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
    if path.is_dir():
        raise CaseError("is a directory, not a MATPOWER case file", source=src)
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise CaseError(f"cannot read file: {e.strerror or e}", source=src) from None
    if not text.strip():
        raise CaseError("empty file", source=src)
    var = _struct_name(text, src)
    fields = _parse_fields(text, src, var)
    if not fields:
        raise CaseError(f"not a MATPOWER case: no '{var}.' fields (expected {var}.baseMVA, {var}.bus, ...)",
                        source=src)
    version = fields.get("version")
    if version is not None and (not isinstance(version[0], str) or version[0].strip("'\" ") != "2"):
        found = version[0] if isinstance(version[0], str) else "(not a string)"
        raise CaseError(f"only MATPOWER case format version 2 is supported, found version {found}",
                        source=src, line=version[1])
    for name in ("baseMVA", "bus", "gen", "branch"):
        if name not in fields:
            raise CaseError(f"missing mpc.{name}", source=src)
    base_text, base_line = fields["baseMVA"]
    base_mva = _scalar(base_text) if isinstance(base_text, str) else None
    if base_mva is None:
        shown = base_text if isinstance(base_text, str) else "a matrix"
        raise CaseError(f"mpc.baseMVA is not a number: {shown!r}", source=src, line=base_line)
    if not np.isfinite(base_mva) or base_mva <= 0:
        raise CaseError(f"mpc.baseMVA must be a positive number, got {base_mva:g}", source=src, line=base_line)
    bus = _matrix(fields["bus"], "bus", src)
    gen = _matrix(fields["gen"], "gen", src)
    branch = _matrix(fields["branch"], "branch", src)
    names = _cell(fields["bus_name"], src) if "bus_name" in fields else None
    return _to_case(path.stem, base_mva, bus, gen, branch, names, src, fields)


def _struct_name(text: str, src: str) -> str:
    """The variable the case function returns (``mpc`` in every MATPOWER file)."""
    for k, line in enumerate(text.splitlines(), 1):
        code = _strip_comment(line).strip()
        if not code:
            continue
        if code.startswith("function"):
            if re.match(r"function\s*\[", code):
                raise CaseError("a MATPOWER version-1 case (function returning [baseMVA, bus, ...]); only "
                                "version 2 (function mpc = ...) is supported", source=src, line=k)
            m = re.match(r"function\s+(\w+)\s*=", code)
            return m.group(1) if m else "mpc"
        break
    return "mpc"


def _scalar(text: str) -> float | None:
    """A number, or arithmetic of numbers and ``sqrt`` (``50/3``, ``135/sqrt(3)`` in case533mt); None otherwise."""
    import ast
    import operator

    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.USub: operator.neg, ast.UAdd: operator.pos}
    text = text.strip().rstrip(";").strip()
    try:
        return float(text)
    except ValueError:
        pass

    def ev(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value,
                                                                                                       bool):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return ops[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in ops:
            return ops[type(node.op)](ev(node.operand))
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "sqrt"
                and len(node.args) == 1 and not node.keywords):
            x = ev(node.args[0])
            if x < 0:
                raise ValueError
            return x ** 0.5
        raise ValueError

    if len(text) > 100:
        return None
    try:
        return float(ev(ast.parse(text, mode="eval").body))
    except (ValueError, SyntaxError, ZeroDivisionError, OverflowError, RecursionError):
        return None


def _parse_fields(text: str, src: str, var: str = "mpc") -> dict:
    """Map field name -> (body, first line) for every ``mpc.X = ...`` in the file.

    For matrices and cells the body is a list of (line number, row text).
    """
    field_re = _FIELD if var == "mpc" else re.compile(rf"^\s*{re.escape(var)}\.(\w+)\s*=\s*(.*)$")
    fields: dict = {}
    lines = text.splitlines()
    i = 0
    n = len(lines)
    while i < n:
        raw = _strip_comment(lines[i])
        m = field_re.match(raw)
        if not m:
            i += 1
            continue
        name, rest = m.group(1), m.group(2).strip()
        start = i + 1
        if rest.startswith("{"):  # a '%' inside a quoted name on this line is text, not a comment
            full = _strip_cell_comment(lines[i])
            rest = full[full.index("{"):]
        if rest.startswith("[") or rest.startswith("{"):
            close = "]" if rest[0] == "[" else "}"
            rows: list[tuple[int, str]] = []
            body = rest[1:]
            lineno = start
            while True:
                end = body.find(close) if close == "]" else _find_unquoted(body, close)
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
                nxt = field_re.match(body)
                if nxt:
                    raise CaseError(f"mpc.{name} opened at line {start} is not closed with '{close}' before "
                                    f"mpc.{nxt.group(1)}", source=src, line=lineno)
            fields[name] = (rows, start)
        else:
            fields[name] = (rest.rstrip(";").strip(), start)
        i += 1
    return fields


def _strip_comment(line: str) -> str:
    k = line.find("%")
    return line if k < 0 else line[:k]


def _find_unquoted(text: str, ch: str) -> int:
    """Index of the first ``ch`` outside single-quoted strings, or -1."""
    quoted = False
    for k, c in enumerate(text):
        if c == "'":
            quoted = not quoted
        elif c == ch and not quoted:
            return k
    return -1


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
        return _with_lines(np.zeros((0, need)), [])
    # the width most rows have is the intended one; name the first row that differs
    widths = [len(r) for r in rows]
    width = max(set(widths), key=lambda w: (widths.count(w), -widths.index(w)))
    for r, ln in zip(rows, row_lines, strict=True):
        if len(r) != width:
            raise CaseError(f"mpc.{name} row has {len(r)} columns, expected {width} like the other rows",
                            source=src, line=ln)
    if width < need:
        raise CaseError(f"mpc.{name} has {width} columns, a version-2 case needs at least {need}",
                        source=src, line=row_lines[0])
    flat = [t for r in rows for t in r]
    try:
        data = np.array(flat, dtype=np.float64)
    except ValueError:  # an expression (135/sqrt(3)) or a typo: go token by token
        values = []
        for r, ln in zip(rows, row_lines, strict=True):
            for c, t in enumerate(r):
                v = _scalar(t)
                if v is None:
                    raise CaseError(f"mpc.{name}: {t!r} in column {_colname(name, c)} is not a number",
                                    source=src, line=ln) from None
                values.append(v)
        data = np.array(values, dtype=np.float64)
    data = data.reshape(len(rows), width)
    used = data[:, :need]
    bad = np.isnan(used)
    inf_ok = _INF_OK[name]
    bad |= np.isinf(used) & ~np.isin(np.arange(need), inf_ok)
    if bad.any():
        k, c = (int(v[0]) for v in np.nonzero(bad))
        raise CaseError(f"mpc.{name}: column {_colname(name, c)} is {used[k, c]:g}, it must be a finite number",
                        source=src, line=row_lines[k])
    return _with_lines(data, row_lines)


_COLNAMES = {
    "bus": "BUS_I BUS_TYPE PD QD GS BS BUS_AREA VM VA BASE_KV ZONE VMAX VMIN".split(),
    "gen": "GEN_BUS PG QG QMAX QMIN VG MBASE GEN_STATUS PMAX PMIN".split(),
    "branch": "F_BUS T_BUS BR_R BR_X BR_B RATE_A RATE_B RATE_C TAP SHIFT BR_STATUS".split(),
}
# columns where MATPOWER cases use +-Inf for "no limit"
_INF_OK = {"bus": [VMAX, VMIN], "gen": [QMAX, QMIN, MBASE, PMAX, PMIN], "branch": [RATE_A, RATE_B, RATE_C]}


def _colname(name: str, c: int) -> str:
    """'3 (PD)': a 0-based column as MATPOWER's 1-based number and its name."""
    names = _COLNAMES.get(name, [])
    return f"{c + 1} ({names[c]})" if c < len(names) else str(c + 1)


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
    k, why = base_kv_problem(base_kv)
    if k is not None:
        raise CaseError(f"bus {number[k]}: {why}", source=src, line=bus.lines[k])
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
