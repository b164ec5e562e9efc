"""Outage lists: MATPOWER change tables (``contab_*.m``) and CSV, each ending in a list of :class:`Outage`.

MATPOWER change table (``apply_changes``; constants of MATPOWER's ``idx_ct``)::

    chgtab = [
    %   label  prob  table     row  col         chgtype  newval
        1      0     CT_TBRCH  17   BR_STATUS   CT_REP   0;
        2      0     CT_TGEN   3    GEN_STATUS  CT_REP   0;
    ];

Rows with the same label form one contingency. gridflow models outages only:
a row must take a branch (``CT_TBRCH``, ``BR_STATUS``) or a generator
(``CT_TGEN``, ``GEN_STATUS``) out of service (``CT_REP`` with 0); any other
change (load scaling, area-wide changes, row 0 = "all rows", costs) is refused
with its file and line, never skipped. Rows are MATPOWER's 1-based table rows.

CSV: columns ``branch`` and/or ``gen`` (0-based rows of the case's tables, the
rows of gridflow's result tables), or ``from_bus`` and ``to_bus`` (case bus
numbers; the in-service branch between them, refused where parallel branches
make it ambiguous); optional ``label``: rows with the same label form one
contingency (default: one contingency per row).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from gridflow.errors import CaseError
from gridflow.io.chgtab import matpower_constants
from gridflow.outages import Outage, branch_label, check_outages, gen_label

#: MATPOWER idx_ct and define_constants values (other changes are named before they are refused)
_CT = matpower_constants()
_TABLE_NAMES = {1: "bus", 2: "gen", 3: "branch", 4: "area-wide bus", 5: "area-wide gen", 6: "area-wide branch",
                7: "load", 8: "area-wide load", 9: "gencost", 10: "area-wide gencost"}


def read_contab(path, case) -> list[Outage]:
    """Outages from a MATPOWER change table file (see the module docstring)."""
    path = Path(path)
    src = str(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise CaseError(f"cannot read file: {e.strerror or e}", source=src) from None
    lines = text.splitlines()
    start = None
    for i, line in enumerate(lines):
        code = line.split("%", 1)[0]
        if re.match(r"^\s*\w+\s*=\s*\[", code):
            start = i
            break
    if start is None:
        raise CaseError("not a MATPOWER change table: no 'chgtab = [' matrix", source=src)
    rows: list[tuple[int, list[str]]] = []
    body = lines[start].split("%", 1)[0]
    body = body[body.index("[") + 1:]
    closed = False
    for i in range(start, len(lines)):
        if i > start:
            body = lines[i].split("%", 1)[0]
        if "]" in body:
            body = body[:body.index("]")]
            closed = True
        for part in body.split(";"):
            toks = part.replace(",", " ").split()
            if toks:
                rows.append((i + 1, toks))
        if closed:
            break
    if not closed:
        raise CaseError("the change table is never closed with ']'", source=src, line=len(lines))
    groups: dict = {}
    for ln, toks in rows:
        if len(toks) != 7:
            raise CaseError(f"a change-table row has {len(toks)} columns, expected 7 (label prob table row col "
                            "chgtype newval)", source=src, line=ln)
        vals = []
        for t in toks:
            if t in _CT:
                vals.append(float(_CT[t]))
                continue
            try:
                vals.append(float(t))
            except ValueError:
                raise CaseError(f"{t!r} is not a number or a MATPOWER constant gridflow knows", source=src,
                                line=ln) from None
        label, _prob, table, row, col, chg, new = vals
        what = _TABLE_NAMES.get(int(table), f"table {table:g}")
        if int(table) == 3 and int(col) == 11 and int(chg) == 1 and new == 0:
            kind, n = "branch", case.nl
        elif int(table) == 2 and int(col) == 8 and int(chg) == 1 and new == 0:
            kind, n = "gen", case.ng
        else:
            raise CaseError(f"change of the {what} table (column {col:g}, type {chg:g}, value {new:g}) is not an "
                            "outage: gridflow's contingency analysis takes branch and generator outages only",
                            source=src, line=ln)
        if row < 1 or row != int(row) or row > n:
            raise CaseError(f"{kind} row {row:g} does not exist (the case has {n} {kind} rows, 1..{n} in "
                            "MATPOWER's numbering)", source=src, line=ln)
        key = label if label != int(label) else int(label)
        br, gn = groups.setdefault(key, ([], []))
        (br if kind == "branch" else gn).append(int(row) - 1)
    out = [Outage(_label(case, key, br, gn), branches=tuple(br), gens=tuple(gn)) for key, (br, gn) in groups.items()]
    check_outages(case, out, src)
    return out


def _label(case, key, br, gn) -> str:
    parts = [branch_label(case, b) for b in br] + [gen_label(case, g) for g in gn]
    return f"{key}: " + ", ".join(parts)


def read_outage_csv(path, case) -> list[Outage]:
    """Outages from a CSV file (see the module docstring)."""
    import pandas as pd

    path = Path(path)
    src = str(path)
    try:
        df = pd.read_csv(path, comment="#", skipinitialspace=True)
    except FileNotFoundError:
        raise CaseError("no such file", source=src) from None
    except Exception as e:
        raise CaseError(f"not a readable CSV file ({type(e).__name__}: {e})", source=src) from None
    cols = set(df.columns)
    if not ({"branch", "gen"} & cols or {"from_bus", "to_bus"} <= cols):
        raise CaseError("an outage CSV needs a 'branch' or 'gen' column (0-based rows) or 'from_bus' and 'to_bus'",
                        source=src)
    nb_lookup = {int(n): i for i, n in enumerate(case.bus.number)}
    groups: dict = {}
    for k, row in enumerate(df.itertuples(index=False)):
        line = k + 2  # header is line 1
        r = row._asdict()
        br, gn = [], []
        for name, n, dest in (("branch", case.nl, br), ("gen", case.ng, gn)):
            v = r.get(name)
            if v is None or (isinstance(v, float) and np.isnan(v)) or v == "":
                continue
            try:
                iv = int(v)
            except (TypeError, ValueError):
                raise CaseError(f"{name} {v!r} is not a row number", source=src, line=line) from None
            if iv != float(v) or not 0 <= iv < n:
                raise CaseError(f"{name} row {v} does not exist (the case has rows 0..{n - 1})", source=src,
                                line=line)
            dest.append(iv)
        if "from_bus" in r and not br and not gn:
            try:
                fb, tb = nb_lookup.get(int(r["from_bus"])), nb_lookup.get(int(r["to_bus"]))
            except (TypeError, ValueError):
                raise CaseError("from_bus and to_bus must be bus numbers", source=src, line=line) from None
            if fb is None or tb is None:
                raise CaseError(f"unknown bus {r['from_bus'] if fb is None else r['to_bus']}", source=src, line=line)
            f, t = case.branch.f, case.branch.t
            hit = np.flatnonzero(case.branch.status & (((f == fb) & (t == tb)) | ((f == tb) & (t == fb))))
            if len(hit) != 1:
                why = "no in-service branch" if not len(hit) else f"{len(hit)} parallel branches (give 'branch' rows)"
                raise CaseError(f"{why} between buses {r['from_bus']} and {r['to_bus']}", source=src, line=line)
            br.append(int(hit[0]))
        if not br and not gn:
            raise CaseError("the row names no branch and no generator", source=src, line=line)
        key = r.get("label", k) if "label" in r else k
        b0, g0 = groups.setdefault(key, ([], []))
        b0.extend(br)
        g0.extend(gn)
    out = [Outage(str(key) if "label" in cols else ", ".join([branch_label(case, b) for b in br]
                                                           + [gen_label(case, g) for g in gn]),
                  branches=tuple(br), gens=tuple(gn)) for key, (br, gn) in groups.items()]
    check_outages(case, out, src)
    return out
