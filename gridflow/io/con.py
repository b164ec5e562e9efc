"""Read PSS/E contingency files (``.con``) into :class:`~gridflow.outages.Outage` lists.

Neither pypowsybl nor the other PSS/E libraries on PyPI read ``.con`` files
(pypowsybl takes contingencies as Python calls or its own JSON), so this is a
small reader of the subset gridflow models, from the PSS/E Program Operation
Manual ("Contingency Description Data File")::

    CONTINGENCY 'LABEL'                       (or CONTINGENCY LABEL)
      OPEN BRANCH FROM BUS 101 TO BUS 102 CIRCUIT 1
      TRIP LINE FROM BUS 101 TO BUS 102 CKT 1
      DISCONNECT BRANCH FROM BUS 101 TO BUS 102 TO BUS 103 CKT 1   (3-winding)
      REMOVE MACHINE 1 FROM BUS 101            (UNIT; TRIP/DISCONNECT too)
    END
    END

Keywords are case-insensitive; ``CIRCUIT``/``CKT`` may be omitted (circuit
"1"); ``/`` starts a comment, ``COM`` lines are comments. A branch is found
by its two buses (either order) and circuit id: the ids a PSS/E reader kept
(``case.meta["branch_ckt"]``), else "1", "2", ... per bus pair in row order,
the ids :func:`gridflow.io.psse_write.write_psse` writes. A 3-winding
transformer takes out its three legs. Machines are found by bus and machine
id (the PSS/E reader's, else "1", "2", ... per bus in row order).

Every other command (SET, CHANGE, MOVE, CLOSE, BLOCK, DISCONNECT BUS,
SINGLE ... automatic lists, buses given by name, ...) is refused: one
:class:`~gridflow.errors.CaseError` line listing every unsupported command
with its line number. A branch or machine the case does not have is one line
naming it, with the file and line.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from gridflow.case import Case
from gridflow.errors import CaseError
from gridflow.outages import Outage, check_outages

_BRANCH_VERBS = {"OPEN", "TRIP", "DISCONNECT"}
_BRANCH_NOUNS = {"BRANCH", "LINE"}
_GEN_VERBS = {"REMOVE", "TRIP", "DISCONNECT"}
_GEN_NOUNS = {"MACHINE", "UNIT"}


def read_con(path: str | Path, case: Case) -> list[Outage]:
    """The contingencies of a PSS/E ``.con`` file as outages of ``case``'s rows.

    Returns
    -------
    list of Outage
        One per ``CONTINGENCY`` block, labelled with its name, in file order.

    Raises
    ------
    CaseError
        Unsupported commands (all listed in one line), unknown branches or
        machines, a block without END, an empty contingency.
    """
    path = Path(path)
    src = str(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise CaseError(f"cannot read file: {e.strerror or e}", source=src) from None
    branches = _branch_index(case)
    machines = _machine_index(case)
    outages: list[Outage] = []
    unsupported: list[str] = []
    current = None  # (label, branches, gens, line)
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("/", 1)[0].strip()
        if not line:
            continue
        try:
            words = shlex.split(line, posix=True)
        except ValueError:
            words = line.split()
        up = [w.upper() for w in words]
        if up[0] == "COM":
            continue
        if current is None:
            if up[0] == "CONTINGENCY":
                label = " ".join(words[1:]) or f"contingency {len(outages) + 1}"
                current = (label, [], [], lineno, len(unsupported))
            elif up[0] == "END":
                current = "done"
                break
            else:
                unsupported.append(f"line {lineno} {line!r}")
            continue
        if up[0] == "END":
            label, brs, gens, start, n_unsupported = current
            if not brs and not gens and len(unsupported) == n_unsupported:
                raise CaseError(f"contingency {label!r} takes nothing out of service", source=src, line=start)
            if brs or gens:
                outages.append(Outage(label, branches=tuple(brs), gens=tuple(gens)))
            current = None
            continue
        rows = _branch_command(up, words, branches, case, src, lineno)
        if rows is not None:
            current[1].extend(r for r in rows if r not in current[1])
            continue
        g = _gen_command(up, words, machines, src, lineno)
        if g is not None:
            if g not in current[2]:
                current[2].append(g)
            continue
        unsupported.append(f"line {lineno} {line!r}")
    if isinstance(current, tuple):
        raise CaseError(f"contingency {current[0]!r} has no END", source=src, line=current[3])
    if unsupported:
        shown = "; ".join(unsupported[:5]) + (f"; and {len(unsupported) - 5} more" if len(unsupported) > 5 else "")
        raise CaseError(f"{len(unsupported)} unsupported .con command(s) (gridflow reads OPEN/TRIP/DISCONNECT "
                        f"BRANCH and REMOVE/TRIP/DISCONNECT MACHINE): {shown}", source=src)
    check_outages(case, outages, src)
    return outages


def _branch_command(up, words, branches, case, src, lineno):
    """Rows of an OPEN BRANCH command, or None if the line is not one."""
    if len(up) < 2 or up[0] not in _BRANCH_VERBS or up[1] not in _BRANCH_NOUNS:
        return None
    rest = up[2:]
    buses = []
    while len(rest) >= 3 and rest[0] in ("FROM", "TO") and rest[1] == "BUS":
        if not re.fullmatch(r"\d+", rest[2]):
            return None  # a bus given by name: unsupported
        buses.append(int(rest[2]))
        rest = rest[3:]
    ckt = "1"
    if len(rest) == 2 and rest[0] in ("CIRCUIT", "CKT"):
        ckt = words[-1].strip()
    elif rest:
        return None
    if len(buses) not in (2, 3):
        return None
    key = (frozenset(buses), ckt.upper())
    rows = branches.get(key)
    if rows is None:
        what = " to ".join(str(b) for b in buses)
        raise CaseError(f"branch from bus {what} circuit {ckt!r} is not in case {case.name}", source=src, line=lineno)
    return rows


def _gen_command(up, words, machines, src, lineno):
    """Row of a REMOVE MACHINE command, or None if the line is not one."""
    if len(up) != 6 or up[0] not in _GEN_VERBS or up[1] not in _GEN_NOUNS or up[3:5] != ["FROM", "BUS"]:
        return None
    if not re.fullmatch(r"\d+", up[5]):
        return None
    key = (int(up[5]), words[2].strip().upper())
    if key not in machines:
        raise CaseError(f"machine {words[2]!r} at bus {key[0]} is not in the case", source=src, line=lineno)
    return machines[key]


def _branch_index(case: Case) -> dict:
    """(frozenset of buses, circuit id) -> branch rows (three for a 3-winding transformer)."""
    from gridflow.io.psse_write import circuit_ids

    out: dict = {}
    kept = case.meta.get("branch_buses")
    ckt = circuit_ids(case)
    num = case.bus.number
    for k in range(case.nl):
        if kept is not None and len(kept) == case.nl and kept[k] is not None:
            buses = frozenset(b for b in kept[k] if b)
        else:
            buses = frozenset((int(num[case.branch.f[k]]), int(num[case.branch.t[k]])))
        out.setdefault((buses, ckt[k].upper()), []).append(k)
    return out


def _machine_index(case: Case) -> dict:
    """(bus number, machine id) -> generator row."""
    from gridflow.io.psse_write import machine_ids

    num = case.bus.number
    return {(int(num[case.gen.bus[k]]), mid.upper()): k for k, mid in enumerate(machine_ids(case))}
